import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { requestAPI } from './handler';
import {
  IConfig,
  IDeployOptions,
  IGate,
  IJob,
  IJobsReply,
  ILogsReply,
  IRegisteredModel,
  IModelVersion,
  IModelsReply,
  IParityTable,
  ISettings,
  IStopReply,
  JobKind,
  refOf
} from './tokens';

/** How often a running job is polled (ms). */
export const DEFAULT_POLL_INTERVAL = 1000;

/** The settings before the settings editor says otherwise (schema/plugin.json holds the same defaults). */
export const DEFAULT_SETTINGS: ISettings = {
  registry: '',
  memory: '',
  pidsLimit: null,
  workers: null,
  refreshInterval: 5000
};

/** The state of an all-targets test of one version: its job, then the table (or why there is none). */
export interface ITestState {
  running: boolean;
  table: IParityTable | null;
  error: string | null;
  job: IJob | null;
}

/** Jobs are remembered per version and kind: the last build, deployment, test, promotion and push of each. */
function jobKey(kind: JobKind, ref: string): string {
  return `${kind} ${ref}`;
}

/**
 * The panel's state, without DOM: registered models, the jobs being polled, test results and errors.
 *
 * Every action goes through `requestAPI`; views re-render on `changed`.
 */
export class PymlModel implements IDisposable {
  constructor(options: PymlModel.IOptions = {}) {
    this._pollInterval = options.pollInterval ?? DEFAULT_POLL_INTERVAL;
  }

  /** Emitted whenever anything the views show has changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get models(): ReadonlyArray<IRegisteredModel> {
    return this._models;
  }

  get config(): IConfig | null {
    return this._config;
  }

  /** Why the last refresh failed, or null. */
  get error(): string | null {
    return this._error;
  }

  get refreshing(): boolean {
    return this._refreshing;
  }

  /** True once `refresh()` has succeeded at least once. */
  get loaded(): boolean {
    return this._loaded;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Every `NAME/VERSION`, newest version of each model first. */
  refs(): string[] {
    return this._models.flatMap(m => m.versions.map(v => refOf(m.name, v.version)));
  }

  /** The version a `NAME/VERSION` (or `NAME`: latest) reference points to. */
  findVersion(ref: string): IModelVersion | null {
    const [name, version] = ref.split('/');
    const model = this._models.find(m => m.name === name);
    if (!model) {
      return null;
    }
    const wanted = version === undefined ? model.latest_version : Number(version);
    return model.versions.find(v => v.version === wanted) ?? null;
  }

  /** The latest build or deployment job (running or finished) started for `ref`: the running one, if any. */
  jobFor(ref: string): IJob | null {
    const jobs = [this.actionFor(ref, 'build'), this.actionFor(ref, 'deploy')].filter((j): j is IJob => !!j);
    return jobs.find(isActive) ?? jobs.sort((a, b) => b.created - a.created)[0] ?? null;
  }

  /**
   * The last build of `ref`, running or finished (succeeded or failed), with its log: kept until the next
   * build of that version starts.
   */
  lastBuild(ref: string): IJob | null {
    return this.actionFor(ref, 'build');
  }

  /** True while a build or deployment of `ref` runs. */
  isBusy(ref: string): boolean {
    const job = this.jobFor(ref);
    return !!job && isActive(job);
  }

  /** The latest test of `ref`: running, or its table, or why it failed; null when never tested. */
  testFor(ref: string): ITestState | null {
    const job = this._jobs.get(jobKey('test', ref)) ?? null;
    if (!job) {
      return null;
    }
    return {
      running: isActive(job),
      table: job.state === 'succeeded' ? (job.result as IParityTable) : null,
      error: job.state === 'failed' ? job.error?.message ?? 'The test failed.' : null,
      job
    };
  }

  get settings(): ISettings {
    return this._settings;
  }

  /** Apply the settings editor's values (registry, default resources, refresh interval). */
  setSettings(settings: Partial<ISettings>): void {
    this._settings = { ...this._settings, ...settings };
    if (this._refreshTimer !== null) {
      this.startAutoRefresh();
    }
    this._changed.emit();
  }

  /**
   * Reload models (and open container logs) every `settings.refreshInterval` ms, so a state change made
   * elsewhere (a notebook, a terminal) shows without a manual refresh; 0 turns it off.
   */
  startAutoRefresh(): void {
    this.stopAutoRefresh();
    const every = this._settings.refreshInterval;
    if (every > 0) {
      this._refreshTimer = setInterval(() => {
        if (!this._refreshing) {
          void this.refresh();
        }
      }, every);
    }
  }

  stopAutoRefresh(): void {
    if (this._refreshTimer !== null) {
      clearInterval(this._refreshTimer);
      this._refreshTimer = null;
    }
  }

  /** The container's recent log lines of `ref`, when its log is open. */
  logsFor(ref: string): string[] | null {
    return this._logsOpen.has(ref) ? this._logs.get(ref) ?? [] : null;
  }

  /** Show or hide the container log of `ref` (fetched now, and again at every refresh while open). */
  async toggleLogs(ref: string): Promise<void> {
    if (this._logsOpen.delete(ref)) {
      this._changed.emit();
      return;
    }
    this._logsOpen.add(ref);
    this._changed.emit();
    await this._loadLogs(ref);
  }

  /** The last failed action on `ref` (a rejected request, a failed stop), or null. */
  errorFor(ref: string): string | null {
    return this._errors.get(ref) ?? null;
  }

  /** Reload models, config and the server's jobs (adopting jobs started elsewhere, e.g. before a reload). */
  async refresh(): Promise<void> {
    if (this._isDisposed) {
      return;
    }
    this._refreshing = true;
    this._changed.emit();
    try {
      const [models, jobs, config] = await Promise.all([
        requestAPI<IModelsReply>('models'),
        requestAPI<IJobsReply>('jobs'),
        this._config ? Promise.resolve(this._config) : requestAPI<IConfig>('config')
      ]);
      this._models = models.models;
      this._config = config;
      this._adoptJobs(jobs.jobs);
      this._error = null;
      this._loaded = true;
      await Promise.all([...this._logsOpen].map(ref => this._loadLogs(ref)));
    } catch (reason) {
      this._error =
        (reason as { code?: string }).code === 'http_404'
          ? 'The pyml_jupyter server extension is not answering: check that `jupyter server extension list` ' +
            'shows it enabled, then restart JupyterLab.'
          : messageOf(reason);
    } finally {
      this._refreshing = false;
      this._changed.emit();
    }
    this._schedulePoll();
  }

  /** Start (or join) a deployment of `ref`; builds the image first when there is none. `options` (port,
   * memory and pids limits, workers, allowed hosts, token) go to the server as they are; it checks them. */
  deploy(ref: string, options: IDeployOptions = {}): Promise<IJob | null> {
    const body: { ref: string } & IDeployOptions = { ref };
    // the settings editor's default resources, unless the call says otherwise
    if (this._settings.memory) {
      body.memory = this._settings.memory;
    }
    if (this._settings.pidsLimit) {
      body.pids_limit = this._settings.pidsLimit;
    }
    if (this._settings.workers) {
      body.workers = this._settings.workers;
    }
    for (const [key, value] of Object.entries(options)) {
      if (value !== undefined) {
        (body as any)[key] = value;
      }
    }
    return this._startJob(ref, 'deployments', body, 'deploy');
  }

  /** Start (or join) an image build of `ref`; its log streams into the job. */
  build(ref: string): Promise<IJob | null> {
    return this._startJob(ref, 'builds', { ref }, 'build');
  }

  /**
   * Test `ref` on every target (this process, a fresh process, the container over HTTP and gRPC, Spark): a
   * job on the server, polled until its table arrives (see `testFor`).
   */
  test(ref: string): Promise<IJob | null> {
    return this._startJob(ref, 'tests', { ref, target: 'all' }, 'test');
  }

  /**
   * Point `alias` (default `champion`) at `ref` behind the server's gates (contract passed, parity on the
   * stored sample): a job whose result lists the gates, or whose error says which gate refused. When another
   * version holds the alias, both versions score the stored sample and the result says how they differ.
   */
  promote(ref: string, alias = 'champion'): Promise<IJob | null> {
    const [name] = ref.split('/');
    const holder = this._models
      .find(m => m.name === name)
      ?.versions.find(v => (v.aliases ?? []).includes(alias) && refOf(name, v.version) !== ref);
    const body = holder ? { ref, alias, compare: alias } : { ref, alias };
    return this._startJob(ref, 'aliases', body, 'promote');
  }

  /** Push the image of `ref` (and its alias tags) to the registry of the settings: a job with progress. */
  async push(ref: string): Promise<IJob | null> {
    const registry = this._settings.registry.trim();
    if (!registry) {
      this._errors.set(
        ref,
        'Set the image registry first: Settings → Settings Editor → pyml → Image registry (e.g. 127.0.0.1:5000).'
      );
      this._changed.emit();
      return null;
    }
    return this._startJob(ref, 'pushes', { ref, registry }, 'push');
  }

  /** The latest job of `kind` (build, deploy, test, promote, push) started for `ref`. */
  actionFor(ref: string, kind: JobKind): IJob | null {
    return this._jobs.get(jobKey(kind, ref)) ?? null;
  }

  /** Stop the container(s) of `ref` (`NAME/VERSION`, or `NAME` for every version). */
  async stop(ref: string): Promise<boolean> {
    this._errors.delete(ref);
    this._stopping.add(ref);
    this._changed.emit();
    try {
      const path = ref.split('/').map(encodeURIComponent).join('/');
      await requestAPI<IStopReply>(`deployments/${path}`, { method: 'DELETE' });
      this._logsOpen.delete(ref);
      return true;
    } catch (reason) {
      this._errors.set(ref, messageOf(reason));
      return false;
    } finally {
      this._stopping.delete(ref);
      await this.refresh();
    }
  }

  /** True while a stop request for `ref` is in flight. */
  isStopping(ref: string): boolean {
    return this._stopping.has(ref);
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this.stopAutoRefresh();
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    Signal.clearData(this);
  }

  private async _loadLogs(ref: string): Promise<void> {
    try {
      const path = ref.split('/').map(encodeURIComponent).join('/');
      const reply = await requestAPI<ILogsReply>(`deployments/${path}/logs`);
      this._logs.set(ref, reply.lines);
    } catch (reason) {
      this._logs.set(ref, [`(no log: ${messageOf(reason)})`]);
    }
    this._changed.emit();
  }

  private async _startJob(ref: string, endPoint: string, body: object, kind: JobKind): Promise<IJob | null> {
    this._errors.delete(ref);
    this._changed.emit();
    try {
      const job = await requestAPI<IJob>(endPoint, {
        method: 'POST',
        body: JSON.stringify(body)
      });
      this._jobs.set(jobKey(kind, ref), job);
      this._schedulePoll();
      return job;
    } catch (reason) {
      this._errors.set(ref, messageOf(reason));
      return null;
    } finally {
      this._changed.emit();
    }
  }

  private _adoptJobs(jobs: IJob[]): void {
    // the server lists newest first; keep the newest job per ref and kind
    const truncated: string[] = [];
    for (const job of [...jobs].reverse()) {
      const key = jobKey(job.kind, job.ref);
      const known = this._jobs.get(key);
      if (known && known.id === job.id) {
        // a job the panel follows: polling fetches it with its full log (the list carries only a short tail),
        // and a final one is already complete
        continue;
      }
      if (!known || known.created <= job.created) {
        this._jobs.set(key, job);
      }
    }
    for (const [key, job] of this._jobs) {
      if (!isActive(job) && job.progress.log.length < job.progress.log_lines && !this._fetched.has(job.id)) {
        truncated.push(key);
      }
    }
    // a finished job met in the list (e.g. after a page reload) keeps only a tail: fetch its log once
    truncated.forEach(key => void this._fetchFinished(key));
  }

  /** Replace the finished job under `key` by its full form (`GET jobs/ID`), once. */
  private async _fetchFinished(key: string): Promise<void> {
    const job = this._jobs.get(key);
    if (!job) {
      return;
    }
    this._fetched.add(job.id);
    try {
      const full = await requestAPI<IJob>(`jobs/${encodeURIComponent(job.id)}`);
      if (this._jobs.get(key)?.id === job.id) {
        this._jobs.set(key, full);
        this._changed.emit();
      }
    } catch {
      // forgotten or unreachable: the tail it has is what there is
    }
  }

  private _schedulePoll(): void {
    if (this._isDisposed || this._timer !== null) {
      return;
    }
    if (![...this._jobs.values()].some(isActive)) {
      return;
    }
    this._timer = setTimeout(() => {
      this._timer = null;
      void this._poll();
    }, this._pollInterval);
  }

  /** One round: fetch every active job; when one has finished, reload the models (image, status). */
  private async _poll(): Promise<void> {
    const active = [...this._jobs.entries()].filter(([, job]) => isActive(job));
    let finished = false;
    await Promise.all(
      active.map(async ([key, job]) => {
        try {
          const fresh = await requestAPI<IJob>(`jobs/${encodeURIComponent(job.id)}`);
          if (this._jobs.get(key)?.id === job.id) {
            this._jobs.set(key, fresh);
            finished = finished || !isActive(fresh);
          }
        } catch (reason) {
          if ((reason as { status?: number }).status === 404) {
            // the server forgot it (restarted): stop polling and say so
            this._jobs.set(key, {
              ...job,
              state: 'failed',
              error: { error: 'not_found', message: 'The server no longer knows this job (was it restarted?).' }
            });
            finished = true;
          }
          // anything else (network blip): keep the job and try again next round
        }
      })
    );
    if (this._isDisposed) {
      return;
    }
    this._changed.emit();
    if (finished) {
      await this.refresh(); // also re-schedules
    } else {
      this._schedulePoll();
    }
  }

  private _changed = new Signal<this, void>(this);
  private _models: IRegisteredModel[] = [];
  private _config: IConfig | null = null;
  private _error: string | null = null;
  private _refreshing = false;
  private _loaded = false;
  private _jobs = new Map<string, IJob>();
  private _errors = new Map<string, string>();
  private _logs = new Map<string, string[]>();
  private _logsOpen = new Set<string>();
  private _settings: ISettings = { ...DEFAULT_SETTINGS };
  private _refreshTimer: ReturnType<typeof setInterval> | null = null;
  private _stopping = new Set<string>();
  private _fetched = new Set<string>();
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _pollInterval: number;
  private _isDisposed = false;
}

export namespace PymlModel {
  export interface IOptions {
    /** Milliseconds between two polls of a running job. */
    pollInterval?: number;
  }
}

/**
 * The gates a finished promotion job checked: from its result when the alias moved, from its error's details
 * when a gate refused (the error's message names that gate); empty while it runs or when it failed earlier.
 */
export function gatesOf(job: IJob): IGate[] {
  const source = job.state === 'succeeded' ? job.result : (job.error?.details as { gates?: unknown } | undefined);
  const gates = source && typeof source === 'object' ? (source as { gates?: unknown }).gates : undefined;
  return Array.isArray(gates) ? (gates as IGate[]) : [];
}

function isActive(job: IJob): boolean {
  return job.state === 'queued' || job.state === 'running';
}

function messageOf(reason: unknown): string {
  if (reason instanceof Error) {
    return reason.message;
  }
  return String(reason);
}
