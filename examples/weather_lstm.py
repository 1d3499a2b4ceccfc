"""Forecast tomorrow's maximum temperature in Seattle from the previous 14 days with an LSTM.

Data: the daily Seattle weather of 2012-2015 bundled with ``vega_datasets`` (read from a local CSV; no download).
Each sample is 14 consecutive days of (precipitation, max and min temperature, wind, season as sine and cosine
of the day of the year); the target is the next day's maximum temperature. The split is chronological: windows
whose target falls before 2015 train the model, the 2015 windows test it, and every statistic used to
standardize comes from the training days only.

The baseline is persistence, "tomorrow equals today", which is hard to beat for day-to-day temperature.
The LSTM therefore predicts the change from today (standardized with training statistics), so that an
untrained model starts near the baseline and learning only has to add what the last two weeks tell.

    python examples/weather_lstm.py --epochs 15 --seed 0
"""

from __future__ import annotations

import argparse

import numpy as np

import barenet as bn

WINDOW = 14
SPLIT_DATE = np.datetime64("2015-01-01")
FEATURES = ["precipitation", "temp_max", "temp_min", "wind"]


def load_days() -> tuple[np.ndarray, np.ndarray]:
    """Dates ``(days,)`` and raw features ``(days, 6)``: the four measurements then season sin/cos."""
    from vega_datasets import data

    frame = data.seattle_weather().sort_values("date")
    dates = frame["date"].to_numpy().astype("datetime64[D]")
    day_of_year = frame["date"].dt.day_of_year.to_numpy()
    angle = 2 * np.pi * day_of_year / 365.25
    values = np.column_stack([frame[FEATURES].to_numpy(float), np.sin(angle), np.cos(angle)])
    return dates, values


def make_windows(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Sliding windows ``(n, window, features)`` and the index of each window's target day ``(n,)``."""
    starts = np.arange(len(values) - window)
    X = values[starts[:, None] + np.arange(window)]
    return X, starts + window


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--units", type=int, default=16)
    args = parser.parse_args(argv)

    dates, values = load_days()
    temp = values[:, FEATURES.index("temp_max")]
    train_days = dates < SPLIT_DATE
    mean, std = values[train_days].mean(axis=0), values[train_days].std(axis=0)
    scaled = (values - mean) / std

    X, target_day = make_windows(scaled, WINDOW)
    y, today = temp[target_day], temp[target_day - 1]
    is_train = dates[target_day] < SPLIT_DATE
    change = y - today
    c_mean, c_std = change[is_train].mean(), change[is_train].std()

    model = bn.Sequential([
        bn.layers.LSTM(args.units, input_shape=(WINDOW, values.shape[1])),
        bn.layers.Dense(1),
    ], seed=args.seed)
    model.compile(loss="mse", optimizer=bn.optimizers.Adam(learning_rate=0.005))
    model.fit(X[is_train], (change[is_train] - c_mean) / c_std, epochs=args.epochs, batch_size=32, verbose=0)

    test = ~is_train
    forecast = today[test] + model.predict(X[test])[:, 0] * c_std + c_mean
    lstm_mae = float(np.mean(np.abs(forecast - y[test])))
    baseline_mae = float(np.mean(np.abs(today[test] - y[test])))
    print(f"train windows: {int(is_train.sum())}, test windows (2015): {int(test.sum())}")
    print(f"test MAE, LSTM: {lstm_mae:.2f} C")
    print(f"test MAE, baseline (tomorrow equals today): {baseline_mae:.2f} C")
    print("the LSTM beats the baseline" if lstm_mae < baseline_mae else "the LSTM does NOT beat the baseline")
    return {"lstm_mae": lstm_mae, "baseline_mae": baseline_mae}


if __name__ == "__main__":
    main()
