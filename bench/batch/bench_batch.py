"""Batch (Spark) benchmark: ``predict_offline`` against ``mlflow.pyfunc.spark_udf`` on the same registered model.

    .venv/bin/python bench/batch/bench_batch.py [--rows 1000000] [--repeats 3] [--master local[*]] [--write-readme]
    .venv/bin/python bench/batch/bench_batch.py --smoke   # 2,000 rows, one warm run, in a temporary folder

The example model of the test suite (scikit-learn logistic regression behind a small feature function; inputs
x1, x2: float64, city: string; outputs score: float64, label: int64) is registered with
``pyml_jupyter.register`` in a fresh MLflow store, then scores the same ``--rows`` rows of a parquet table
two ways, in one Spark session with the same settings (Arrow batches of 10,000 rows for both):

* **pyml**: ``pyml_jupyter.predict_offline("bench_example/1", "SELECT id, x1, x2, city FROM bench_src", ...)``
  (resolve the version, ship the package, score with ``mapInPandas``, write a table, rename it into place);
* **mlflow spark_udf**: ``mlflow.pyfunc.spark_udf(spark, "models:/bench_example/1", result_type=...)`` applied
  to the same columns, written to a table of the same format (``env_manager="local"``).

Each run is timed end to end, as a user calls it (for spark_udf: creating the UDF and writing the table).
After a warm-up job (Python workers started, the source read once), the first run of each is reported as
*cold* (the model is shipped and loaded); then ``--repeats``
*warm* runs of each, alternated, reported as best and median (the best is the robust figure on a machine
shared with other work; the load average is recorded). Both outputs are compared row by row before anything
is reported. Everything lives in ``bench/results/batch/`` (git-ignored).
``--write-readme`` replaces the "Batch (Spark)" section of bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from readme import write_section  # noqa: E402  (bench/readme.py)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from pyml_jupyter.serving.contract import DataFrameModel  # noqa: E402

MODEL_NAME = "bench_example"
COLUMNS = ["x1", "x2", "city"]


# -------------------------------------------------------------------------- the model (as in tests/conftest.py)


def add_features(df):
    out = df[["x1", "x2"]].copy()
    out["x1x2"] = df["x1"] * df["x2"]
    out["is_paris"] = (df["city"] == "paris").astype(float)
    return out


class ExampleModel(DataFrameModel):
    def __init__(self, artifacts):
        self.clf = artifacts["clf"]

    def predict(self, df):
        proba = self.clf.predict_proba(add_features(df).to_numpy())[:, 1]
        return pd.DataFrame({"score": proba, "label": (proba > 0.5).astype(np.int64)}, index=df.index)


def example_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                         "city": rng.choice(["paris", "lyon", "nice"], size=n).astype(object)})


def register_example() -> str:
    """Register the example model in the (fresh) MLflow store; returns NAME/VERSION."""
    from pyml_jupyter import register

    train = example_frame(200, seed=1)
    y = (train["x1"] + 0.5 * train["x2"] > 0).astype(int)
    clf = LogisticRegression().fit(add_features(train).to_numpy(), y)
    registered = register(ExampleModel, MODEL_NAME, example_frame(5, seed=2), {"clf": clf}, namespace=globals())
    return f"{MODEL_NAME}/{registered.version}"


# ------------------------------------------------------------------------------------------------ the runs


def make_source(spark, rows: int, partitions: int) -> None:
    spark.sql("DROP TABLE IF EXISTS bench_src")
    spark.sql(f"""
        CREATE TABLE bench_src USING parquet AS
        SELECT id, randn(1) AS x1, randn(2) AS x2,
               element_at(array('paris', 'lyon', 'nice'), CAST(floor(rand(3) * 3) AS INT) + 1) AS city
        FROM range(0, {rows}, 1, {partitions})
    """)


def warm_up(spark, cores: int) -> None:
    """Start Spark's Python workers and read the source once, so neither path's cold run pays for that."""
    def identity(batches):
        yield from batches

    spark.range(0, 10_000, 1, cores).mapInPandas(identity, "id long").count()
    spark.table("bench_src").selectExpr("sum(x1)", "count(city)").collect()


def run_pyml(spark, ref: str) -> float:
    from pyml_jupyter import predict_offline

    started = time.perf_counter()
    result = predict_offline(ref, "SELECT id, x1, x2, city FROM bench_src", "bench_out_pyml", spark=spark,
                             keep=["id"], mode="overwrite")
    seconds = time.perf_counter() - started
    assert result.rows == spark.table("bench_src").count()
    return seconds


def run_spark_udf(spark, ref: str) -> float:
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    name, version = ref.split("/")
    started = time.perf_counter()
    udf = mlflow.pyfunc.spark_udf(spark, f"models:/{name}/{version}", result_type="score double, label bigint",
                                  env_manager="local")
    scored = spark.table("bench_src").select("id", udf(*[F.col(c) for c in COLUMNS]).alias("p"))
    scored.select("id", "p.score", "p.label").write.mode("overwrite").saveAsTable("bench_out_udf")
    return time.perf_counter() - started


def same_predictions(spark) -> dict:
    def summary(table: str) -> tuple[int, float, int]:
        row = spark.sql(f"SELECT count(*) n, sum(score) s, sum(label) l FROM {table}").collect()[0]
        return int(row.n), float(row.s), int(row.l)

    ours, theirs = summary("bench_out_pyml"), summary("bench_out_udf")
    assert ours[0] == theirs[0] and ours[2] == theirs[2] and abs(ours[1] - theirs[1]) < 1e-6 * max(1, ours[0]), \
        f"the two outputs differ: pyml {ours}, spark_udf {theirs}"
    mismatched = spark.sql("""
        SELECT count(*) AS n FROM bench_out_pyml p JOIN bench_out_udf u ON p.id = u.id
        WHERE abs(p.score - u.score) > 1e-12 OR p.label != u.label
    """).collect()[0].n
    assert mismatched == 0, f"{mismatched} rows differ between pyml and spark_udf"
    return {"rows": ours[0], "sum_score": ours[1], "sum_label": ours[2]}


# ---------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5, help="warm runs of each, alternated (default 5)")
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--partitions", type=int, default=0, help="source table partitions (default 2 x cores)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "results" / "batch")
    parser.add_argument("--write-readme", action="store_true",
                        help="update the Batch (Spark) section of bench/README.md")
    parser.add_argument("--smoke", action="store_true",
                        help="2,000 rows in 2 partitions, one warm run, in a temporary folder: checks that it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        import tempfile

        args.rows, args.repeats, args.partitions, args.write_readme = 2_000, 1, 2, False
        args.workdir = Path(tempfile.mkdtemp(prefix="pyml-bench-batch-"))

    # a fresh MLflow store and Spark warehouse of the benchmark's own
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    os.chdir(args.workdir)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.workdir / 'mlflow.db'}"

    print("registering the example model ...", flush=True)
    ref = register_example()

    from pyml_jupyter.batch import spark_session

    spark = spark_session(warehouse_dir=args.workdir / "spark-warehouse", master=args.master)
    cores = spark.sparkContext.defaultParallelism
    partitions = args.partitions or 2 * cores
    print(f"source: {args.rows:,} rows in {partitions} partitions; Spark {spark.version}, {args.master} "
          f"({cores} cores)", flush=True)
    make_source(spark, args.rows, partitions)
    warm_up(spark, cores)

    runners = {"pyml predict_offline": run_pyml, "mlflow spark_udf": run_spark_udf}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for attempt in range(args.repeats + 1):
        order = list(runners) if attempt % 2 == 0 else list(runners)[::-1]
        for name in order:
            seconds = runners[name](spark, ref)
            times[name].append(seconds)
            print(f"  {'cold' if attempt == 0 else f'warm {attempt}'}  {name:<22} {seconds:7.2f} s  "
                  f"{args.rows / seconds:>12,.0f} rows/s", flush=True)
    check = same_predictions(spark)
    print(f"outputs agree: {check['rows']:,} rows, sum(score) {check['sum_score']:.6f}, "
          f"sum(label) {check['sum_label']:,}")

    table = report(times, args.rows, cores, spark.version, args.master, os.getloadavg())
    print()
    print(table)
    if args.write_readme:
        write_readme(ROOT / "bench" / "README.md", table, args)
    spark.stop()
    return 0


def report(times: dict[str, list[float]], rows: int, cores: int, spark_version: str, master: str,
           load: tuple[float, float, float]) -> str:
    def warm(name: str) -> list[float]:
        return times[name][1:] or times[name]

    best_peer, median_peer = min(warm("mlflow spark_udf")), statistics.median(warm("mlflow spark_udf"))
    lines = ["| path | cold s | cold rows/s | warm best s | warm best rows/s | warm median s | vs spark_udf "
             "(best / median) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, runs in times.items():
        cold, best, median = runs[0], min(warm(name)), statistics.median(warm(name))
        lines.append(f"| {name} | {cold:.2f} | {rows / cold:,.0f} | {best:.2f} | {rows / best:,.0f} | "
                     f"{median:.2f} | {best_peer / best:.2f}x / {median_peer / median:.2f}x |")
    machine = (f"{rows:,} rows of the example model; Spark {spark_version} `{master}` ({cores} cores), "
               f"Python {platform.python_version()}, {platform.machine()}, load average "
               f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the end of the run; both write a parquet table "
               f"(`id, score, label`), Arrow batches of 10,000 rows; {len(times['mlflow spark_udf']) - 1} warm "
               f"runs of each.")
    return machine + "\n\n" + "\n".join(lines)


def write_readme(path: Path, table: str, args: argparse.Namespace) -> None:
    write_section(
        "Batch (Spark)", "bench/batch/bench_batch.py",
        " End-to-end time of each call as a user makes it: `predict_offline` (resolve the registered version, "
        "ship the package, score with `mapInPandas`, write, rename into place) against `mlflow.pyfunc.spark_udf` "
        "(create the UDF, score, write). After a warm-up job (Python workers started, source read once), cold is "
        "the first run of each (the model is shipped and loaded); warm runs follow, alternated. The two outputs "
        f"are checked row by row before anything is reported.\n\n{table}",
        how=f"--rows {args.rows} --repeats {args.repeats}", path=path,
    )

if __name__ == "__main__":
    sys.exit(main())
