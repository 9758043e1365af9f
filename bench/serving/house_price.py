"""The benchmark's model: example_notebooks/02's house price model (a scikit-learn GradientBoostingRegressor
behind a pandas feature step), as a module so that the contract check can capture it outside a notebook."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingRegressor

from pyml_jupyter import DataFrameModel

DISTRICTS = ("north", "south", "center")


def encode(df):
    out = df[["rooms", "area_m2"]].astype(float)
    for d in DISTRICTS:
        out[f"district_{d}"] = (df["district"] == d).astype(float)
    return out


class HousePrice(DataFrameModel):
    def __init__(self, artifacts):
        self.gbr = artifacts["gbr"]

    def predict(self, df):
        return pd.DataFrame({"price": self.gbr.predict(encode(df))}, index=df.index)


def houses(n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "rooms": rng.integers(1, 7, n),
        "area_m2": rng.normal(80, 25, n).clip(20).round(1),
        "district": rng.choice(list(DISTRICTS), n),
    })


def trained() -> GradientBoostingRegressor:
    data = houses(400)
    price = 1500 * data["area_m2"] + 9000 * data["rooms"] + np.where(data["district"] == "center", 60000, 0)
    return GradientBoostingRegressor(n_estimators=50, random_state=0).fit(encode(data), price)
