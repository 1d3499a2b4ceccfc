"""The recurrent examples run as subprocesses with quick settings and print the claims their docstrings make."""

from __future__ import annotations

from test_examples import number_after, run_example


def test_weather_lstm_beats_tomorrow_equals_today():
    out = run_example("weather_lstm.py", "--epochs", "10", "--seed", "0")
    lstm = number_after("test MAE, LSTM:", out)
    baseline = number_after("test MAE, baseline (tomorrow equals today):", out)
    assert 1.0 < baseline < 4.0  # degrees C: a real forecast error, not a constant
    assert lstm < baseline - 0.05, out
    assert "the LSTM beats the baseline" in out


def test_weather_lstm_untrained_does_not_beat_the_baseline():
    # Guards the check above: the margin comes from training, not from the way the forecast is assembled.
    out = run_example("weather_lstm.py", "--epochs", "0", "--seed", "0")
    assert number_after("test MAE, LSTM:", out) > number_after("test MAE, baseline (tomorrow equals today):", out)
    assert "does NOT beat" in out


def test_gru_learns_order_that_a_bag_of_symbols_cannot_show():
    out = run_example("sequence_gru.py", "--train", "800", "--epochs", "5", "--seed", "1")
    gru = number_after("test accuracy, GRU on the sequence:", out)
    dense = number_after("test accuracy, Dense on the bag of symbols:", out)
    assert gru > 0.95, out
    assert 0.4 < dense < 0.6, out  # chance: both classes hold the same symbols
