/**
 * The shapes the `/pyml/` REST API answers with (see pyml_jupyter/server/handlers.py).
 */

/** A Docker image built for a model version. */
export interface IImage {
  tag: string;
  id: string;
  size_bytes: number | null;
}

/** A running (or exited) container serving a model version. */
export interface IDeploymentState {
  url: string;
  status: string;
  container_id: string;
  grpc_target?: string;
}

/** One registered version of a model and what exists for it downstream. */
export interface IModelVersion {
  version: number;
  run_id: string;
  created: number | null;
  contract_status: 'passed' | 'failed' | null;
  /** `models:/NAME/VERSION` (older servers call it `model_uri`) */
  uri?: string;
  model_uri?: string;
  image: IImage | null;
  deployment: IDeploymentState | null;
  kind?: string | null;
  /** MLflow registered-model aliases pointing at this version, e.g. `champion` */
  aliases?: string[];
  /** Where the image was last pushed, `REGISTRY/pyml/NAME:VERSION@DIGEST` (absent: never pushed) */
  pushed_image?: string | null;
}

/** A registered model, versions newest first. */
export interface IRegisteredModel {
  name: string;
  latest_version: number | null;
  description?: string;
  versions: IModelVersion[];
  mlflow_ui_url: string | null;
}

/** `GET /pyml/config`. */
export interface IConfig {
  mlflow_ui_url: string | null;
  tracking_uri: string;
  version: string;
}

/** The progress snapshot of a job: what the notebook widget shows too. */
export interface IProgress {
  title: string;
  stage: string;
  fraction: number | null;
  state: 'running' | 'succeeded' | 'failed' | 'lost';
  error: string | null;
  started: number;
  finished: number | null;
  log: string[];
  log_lines: number;
}

/** An error as the server writes it. */
export interface IErrorBody {
  error: string;
  message: string;
  details?: unknown;
}

/** How a deployment's container is confined and who may call it (`POST /pyml/deployments`; see `deploy()`). */
export interface IDeployOptions {
  port?: number;
  /** Memory limit such as '512m' or '8g' (default 4g). */
  memory?: string;
  /** Processes and threads the container may run (default 1024). */
  pids_limit?: number;
  /** Serving processes (default: one per CPU the container may use). */
  workers?: number;
  /** Host names to serve besides loopback and the container's own. */
  allowed_hosts?: string[];
  /** true: require a random bearer token (the notebook's Deployment sends it). */
  token?: boolean;
}

/** One condition of a promotion (contract, parity) and what it found (`POST /pyml/aliases`). */
export interface IGate {
  name: string;
  ok: boolean;
  detail: string;
}

export type JobKind = 'build' | 'deploy' | 'test' | 'promote' | 'push';
/** `lost`: the Jupyter server restarted while the job ran; nothing runs it any more. */
export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'lost';

/** A long job (image build, deployment) as `GET /pyml/jobs/{id}` answers it. */
export interface IJob {
  id: string;
  kind: JobKind;
  ref: string;
  state: JobState;
  result: any;
  error: IErrorBody | null;
  created: number;
  finished: number | null;
  progress: IProgress;
}

/**
 * `POST /pyml/tests`: the same sample through the notebook and the target (the container), compared row by
 * row (pyml_jupyter/parity.py). `rows` is a table whose columns are the sample's input columns, then for each
 * output `NAME (notebook)` and `NAME (TARGET)`, then `|diff|` (numeric outputs) and `match` (✓ or ✗).
 */
export interface IParityReport {
  ok: boolean;
  target: string;
  ref: string;
  n_rows: number;
  n_mismatched: number;
  /** null when nothing numeric was compared; "inf" when a value was missing */
  max_abs_diff: number | string | null;
  mismatched_columns: string[];
  problems: string[];
  latency: Record<string, number | Record<string, number>>;
  rtol: number;
  atol: number;
  rows: { columns: string[]; data: unknown[][] };
}

/** One target's line of an all-targets parity run (pyml_jupyter/parity_table.py). */
export interface ITargetResult {
  key: 'notebook' | 'fresh_process' | 'http' | 'grpc' | 'spark' | string;
  label: string;
  status: 'match' | 'mismatch' | 'failed' | 'skipped';
  ok: boolean;
  reason: string;
  summary: string;
  latency: Record<string, number | Record<string, number>>;
  latency_text: string;
  n_mismatched: number | null;
  max_abs_diff: number | string | null;
  mismatched_columns: string[];
  problems: string[];
}

/**
 * The result of a `test` job with `target: "all"`: one table, a row per input row and a column group per
 * target (`input`, `notebook`, then `fresh process`, `container (HTTP)`, `container (gRPC)`, `Spark`; a
 * target's group holds its outputs, `|diff|` and `match`, or one `skipped`/`failed` column). `bad` lists the
 * [row, column] cells that differ from the notebook.
 */
export interface IParityTable {
  ok: boolean;
  ref: string;
  verdict: string;
  latency_text: string;
  rtol: number;
  atol: number;
  targets: ITargetResult[];
  table: {
    groups: { label: string; columns: string[] }[];
    index: unknown[];
    data: unknown[][];
    bad: [number, number][];
    mismatched_rows: number[];
  };
}

/** `GET /pyml/deployments/NAME/VERSION/logs`. */
export interface ILogsReply {
  lines: string[];
}

/** What the settings editor holds (schema/plugin.json). */
export interface ISettings {
  registry: string;
  memory: string;
  pidsLimit: number | null;
  workers: number | null;
  refreshInterval: number;
}

/** Response bodies of the list endpoints. */
export interface IModelsReply {
  models: IRegisteredModel[];
}
export interface IJobsReply {
  jobs: IJob[];
}
export interface IStopReply {
  stopped: unknown[];
}

/** `NAME/VERSION`, the reference every call uses. */
export function refOf(name: string, version: number): string {
  return `${name}/${version}`;
}
