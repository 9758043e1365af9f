/**
 * PymlModel: the panel's state logic. Only the transport (`requestAPI`) is replaced, by a small fake server.
 */
import { PymlRequestError, requestAPI } from '../handler';
import { gatesOf, PymlModel } from '../model';
import { IJob, IRegisteredModel, IParityTable } from '../tokens';

jest.mock('../handler', () => {
  const actual = jest.requireActual('../handler');
  return { ...actual, requestAPI: jest.fn() };
});

const request = requestAPI as jest.MockedFunction<typeof requestAPI>;

type Route = (init: RequestInit) => unknown;

/** Answer `requestAPI(endPoint, init)` from `METHOD endPoint` routes; record every call. */
function serve(routes: Record<string, Route>): string[] {
  const calls: string[] = [];
  request.mockImplementation(async (endPoint = '', init: RequestInit = {}) => {
    const key = `${init.method ?? 'GET'} ${endPoint}`;
    calls.push(key);
    const route = routes[key];
    if (!route) {
      throw new PymlRequestError(`no route ${key}`, 404, 'not_found');
    }
    return route(init) as any;
  });
  return calls;
}

function model(name: string, versions: Partial<IRegisteredModel['versions'][0]>[]): IRegisteredModel {
  return {
    name,
    latest_version: versions.length ? (versions[0].version as number) : null,
    mlflow_ui_url: null,
    versions: versions.map(v => ({
      version: 1,
      run_id: 'r',
      created: 0,
      contract_status: 'passed',
      uri: `models:/${name}/${v.version}`,
      image: null,
      deployment: null,
      ...v
    }))
  };
}

function job(overrides: Partial<IJob>): IJob {
  return {
    id: 'j1',
    kind: 'deploy',
    ref: 'churn/2',
    state: 'running',
    result: null,
    error: null,
    created: 100,
    finished: null,
    progress: {
      title: 'deploy churn/2',
      stage: 'building image',
      fraction: 0.5,
      state: 'running',
      error: null,
      started: 100,
      finished: null,
      log: ['Step 1/5'],
      log_lines: 1
    },
    ...overrides
  };
}

const CONFIG = { mlflow_ui_url: 'http://mlflow:5000/', tracking_uri: 'http://mlflow:5000', version: '0.1.0' };
const MODELS = [model('churn', [{ version: 2 }, { version: 1, contract_status: 'failed' }])];

/** Let pending promise callbacks run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) {
    await Promise.resolve();
  }
}

describe('PymlModel', () => {
  let m: PymlModel;

  beforeEach(() => {
    jest.useFakeTimers();
    request.mockReset();
    m = new PymlModel({ pollInterval: 1000 });
  });

  afterEach(() => {
    m.dispose();
    jest.useRealTimers();
  });

  it('refresh loads models, config and jobs and signals the change', async () => {
    serve({
      'GET models': () => ({ models: MODELS }),
      'GET jobs': () => ({ jobs: [] }),
      'GET config': () => CONFIG
    });
    const seen: boolean[] = [];
    m.changed.connect(() => seen.push(m.refreshing));
    await m.refresh();
    expect(m.models).toEqual(MODELS);
    expect(m.config).toEqual(CONFIG);
    expect(m.loaded).toBe(true);
    expect(m.error).toBeNull();
    expect(m.refs()).toEqual(['churn/2', 'churn/1']);
    expect(m.findVersion('churn/1')?.contract_status).toBe('failed');
    expect(m.findVersion('churn')?.version).toBe(2);
    expect(seen).toEqual([true, false]);
  });

  it('config is fetched once', async () => {
    const calls = serve({
      'GET models': () => ({ models: MODELS }),
      'GET jobs': () => ({ jobs: [] }),
      'GET config': () => CONFIG
    });
    await m.refresh();
    await m.refresh();
    expect(calls.filter(c => c === 'GET config')).toHaveLength(1);
  });

  it('a failed refresh keeps the last models and shows the server message', async () => {
    let fail = false;
    serve({
      'GET models': () => {
        if (fail) {
          throw new PymlRequestError('MLflow store unreachable: check MLFLOW_TRACKING_URI', 503, 'pyml_error');
        }
        return { models: MODELS };
      },
      'GET jobs': () => ({ jobs: [] }),
      'GET config': () => CONFIG
    });
    await m.refresh();
    fail = true;
    await m.refresh();
    expect(m.error).toBe('MLflow store unreachable: check MLFLOW_TRACKING_URI');
    expect(m.models).toEqual(MODELS);
    expect(m.refreshing).toBe(false);
  });

  it('a server without the extension (404 on /pyml/) says how to enable it', async () => {
    request.mockImplementation(async () => {
      throw new PymlRequestError('404 Not Found', 404, 'http_404');
    });
    await m.refresh();
    expect(m.error).toMatch(/server extension is not answering/);
    expect(m.loaded).toBe(false);
  });

  it('deploy posts the container limits it is given, and only those', async () => {
    const bodies: unknown[] = [];
    serve({
      'POST deployments': init => {
        bodies.push(JSON.parse(init.body as string));
        return job({ state: 'failed', finished: 1 });
      },
      'GET models': () => ({ models: MODELS }),
      'GET jobs': () => ({ jobs: [] }),
      'GET config': () => CONFIG
    });
    await m.deploy('churn/2', { memory: '2g', pids_limit: 256, allowed_hosts: ['models.example.com'], token: true });
    await m.deploy('churn/3', { memory: undefined, port: 5005 });
    expect(bodies).toEqual([
      { ref: 'churn/2', memory: '2g', pids_limit: 256, allowed_hosts: ['models.example.com'], token: true },
      { ref: 'churn/3', port: 5005 }
    ]);
  });

  it('deploy posts the ref, tracks the job and polls it until it finishes, then reloads models', async () => {
    let polls = 0;
    const deployed = model('churn', [{ version: 2, deployment: { url: 'http://127.0.0.1:5001', status: 'running', container_id: 'c' } }]);
    let models = MODELS;
    const calls = serve({
      'POST deployments': init => {
        expect(JSON.parse(init.body as string)).toEqual({ ref: 'churn/2' });
        return job({});
      },
      'GET jobs/j1': () => {
        polls += 1;
        if (polls < 2) {
          return job({ progress: { ...job({}).progress, fraction: 0.8, log: ['Step 1/5', 'Step 2/5'], log_lines: 2 } });
        }
        models = [deployed];
        return job({ state: 'succeeded', finished: 200, result: { url: 'http://127.0.0.1:5001' } });
      },
      'GET models': () => ({ models }),
      'GET jobs': () => ({ jobs: [] }),
      'GET config': () => CONFIG
    });

    const started = await m.deploy('churn/2');
    expect(started?.id).toBe('j1');
    expect(m.isBusy('churn/2')).toBe(true);
    expect(m.jobFor('churn/2')?.progress.stage).toBe('building image');

    jest.advanceTimersByTime(1000);
    await settle();
    expect(m.jobFor('churn/2')?.progress.log).toEqual(['Step 1/5', 'Step 2/5']);
    expect(m.isBusy('churn/2')).toBe(true);

    jest.advanceTimersByTime(1000);
    await settle();
    expect(m.jobFor('churn/2')?.state).toBe('succeeded');
    expect(m.isBusy('churn/2')).toBe(false);
    expect(m.findVersion('churn/2')?.deployment?.status).toBe('running');

    // nothing is active any more: no further polling
    jest.advanceTimersByTime(5000);
    await settle();
    expect(calls.filter(c => c === 'GET jobs/j1')).toHaveLength(2);
  });

  it('a failed job keeps its error for the view', async () => {
    serve({
      'POST deployments': () => job({ kind: 'deploy' }),
      'GET jobs/j1': () =>
        job({
          kind: 'deploy',
          state: 'failed',
          error: { error: 'build_error', message: 'pip could not install nope==0.0' }
        }),
      'GET models': () => ({ models: MODELS }),
      'GET jobs': () => ({ jobs: [] }),
      'GET config': () => CONFIG
    });
    await m.deploy('churn/2');
    jest.advanceTimersByTime(1000);
    await settle();
    expect(m.jobFor('churn/2')?.state).toBe('failed');
    expect(m.jobFor('churn/2')?.error?.message).toBe('pip could not install nope==0.0');
  });

  it('a rejected deploy request becomes an inline error for that version only', async () => {
    serve({
      'POST deployments': () => {
        throw new PymlRequestError("'a b' is not a valid model name", 400, 'invalid_name');
      }
    });
    const started = await m.deploy('churn/2');
    expect(started).toBeNull();
    expect(m.errorFor('churn/2')).toBe("'a b' is not a valid model name");
    expect(m.errorFor('churn/1')).toBeNull();
    expect(m.isBusy('churn/2')).toBe(false);
  });

  it('a port is sent only when given', async () => {
    const bodies: unknown[] = [];
    serve({
      'POST deployments': init => {
        bodies.push(JSON.parse(init.body as string));
        return job({ state: 'succeeded' });
      }
    });
    await m.deploy('churn/2', { port: 8080 });
    await m.deploy('churn/1');
    expect(bodies).toEqual([{ ref: 'churn/2', port: 8080 }, { ref: 'churn/1' }]);
  });

  it('refresh adopts running jobs started elsewhere (e.g. before a page reload) and polls them', async () => {
    const calls = serve({
      'GET models': () => ({ models: MODELS }),
      'GET jobs': () => ({
        jobs: [job({ id: 'new', created: 300 }), job({ id: 'old', created: 100, state: 'failed' })]
      }),
      'GET config': () => CONFIG,
      'GET jobs/new': () => job({ id: 'new', created: 300 })
    });
    await m.refresh();
    expect(m.jobFor('churn/2')?.id).toBe('new');
    jest.advanceTimersByTime(1000);
    await settle();
    expect(calls).toContain('GET jobs/new');
  });

  it('a job lost in a server restart is adopted as finished: not busy, not polled, its message kept', async () => {
    const message = 'The Jupyter server stopped while this build was running (building image)';
    const calls = serve({
      'GET models': () => ({ models: MODELS }),
      'GET jobs': () => ({
        jobs: [job({ id: 'gone', kind: 'build', state: 'lost', error: { error: 'lost', message } })]
      }),
      'GET config': () => CONFIG
    });
    await m.refresh();
    expect(m.jobFor('churn/2')?.state).toBe('lost');
    expect(m.jobFor('churn/2')?.error?.message).toBe(message);
    expect(m.isBusy('churn/2')).toBe(false);
    jest.advanceTimersByTime(5000);
    await settle();
    expect(calls).not.toContain('GET jobs/gone');
  });

  it('a job the server forgot (404) stops being polled', async () => {
    const calls = serve({
      'POST deployments': () => job({}),
      'GET models': () => ({ models: MODELS }),
      'GET jobs': () => ({ jobs: [] }),
      'GET config': () => CONFIG
    });
    await m.deploy('churn/2');
    jest.advanceTimersByTime(1000);
    await settle();
    expect(m.jobFor('churn/2')?.state).toBe('failed');
    expect(m.jobFor('churn/2')?.error?.error).toBe('not_found');
    jest.advanceTimersByTime(5000);
    await settle();
    expect(calls.filter(c => c === 'GET jobs/j1')).toHaveLength(1);
  });

  it('a network error while polling keeps the job and retries', async () => {
    let polls = 0;
    serve({
      'POST deployments': () => job({}),
      'GET jobs/j1': () => {
        polls += 1;
        if (polls === 1) {
          throw new TypeError('Failed to fetch');
        }
        return job({});
      }
    });
    await m.deploy('churn/2');
    jest.advanceTimersByTime(1000);
    await settle();
    expect(m.isBusy('churn/2')).toBe(true);
    jest.advanceTimersByTime(1000);
    await settle();
    expect(polls).toBe(2);
  });

  const TABLE: IParityTable = {
    ok: true,
    ref: 'churn/2',
    verdict: '✓ churn/2: the same predictions on 5 targets',
    latency_text: 'notebook 1.0 ms',
    rtol: 1e-9,
    atol: 1e-12,
    targets: [],
    table: { groups: [{ label: 'input', columns: ['x'] }], index: [0], data: [[1]], bad: [], mismatched_rows: [] }
  };

  it('test starts an all-targets job, polls it, and its table arrives when it succeeds', async () => {
    const calls = serve({
      'POST tests': init => {
        expect(JSON.parse(init.body as string)).toEqual({ ref: 'churn/2', target: 'all' });
        return job({ id: 't1', kind: 'test' });
      },
      'GET jobs/t1': () => job({ id: 't1', kind: 'test', state: 'succeeded', result: TABLE }),
      'GET models': () => ({ models: MODELS }),
      'GET jobs': () => ({ jobs: [] }),
      'GET config': () => CONFIG
    });
    await m.test('churn/2');
    expect(m.testFor('churn/2')?.running).toBe(true);
    expect(m.testFor('churn/2')?.table).toBeNull();
    expect(m.jobFor('churn/2')).toBeNull(); // a test is not a build or a deployment
    jest.advanceTimersByTime(1000);
    await settle();
    expect(calls).toContain('GET jobs/t1');
    expect(m.testFor('churn/2')).toMatchObject({ running: false, table: TABLE, error: null });
    expect(calls).toContain('GET models'); // the test may have deployed: reload
  });

  it('a failed test job shows its message (a model failing on the sample is a 422 model_failed)', async () => {
    serve({
      'POST tests': () =>
        job({
          id: 't2',
          kind: 'test',
          state: 'failed',
          error: { error: 'model_failed', message: 'churn/2 raised ValueError on the sample' }
        })
    });
    await m.test('churn/2');
    expect(m.testFor('churn/2')).toMatchObject({
      running: false,
      table: null,
      error: 'churn/2 raised ValueError on the sample'
    });
  });

  it('a rejected test request is an inline error', async () => {
    serve({
      'POST tests': () => {
        throw new PymlRequestError("target must be one of 'all', 'container', 'batch'", 400, 'bad_request');
      }
    });
    expect(await m.test('churn/2')).toBeNull();
    expect(m.errorFor('churn/2')).toContain('target must be one of');
  });

  it('refresh adopts a test job and a deploy job of one version side by side', async () => {
    serve({
      'GET models': () => ({ models: MODELS }),
      'GET jobs': () => ({
        jobs: [job({ id: 't3', kind: 'test', created: 200 }), job({ id: 'd3', kind: 'deploy', created: 100 })]
      }),
      'GET config': () => CONFIG
    });
    await m.refresh();
    expect(m.jobFor('churn/2')?.id).toBe('d3');
    expect(m.testFor('churn/2')?.job?.id).toBe('t3');
  });

  it('build posts the ref to builds and tracks the job as the version\'s work', async () => {
    const calls = serve({ 'POST builds': () => job({ kind: 'build' }), 'GET jobs/j1': () => job({ kind: 'build' }) });
    await m.build('churn/2');
    expect(calls).toEqual(['POST builds']);
    expect(m.jobFor('churn/2')?.kind).toBe('build');
    expect(m.isBusy('churn/2')).toBe(true);
  });

  it('the last build stays, with its log, after it succeeded, a deployment ran and a refresh listed it', async () => {
    const log = ['Step 1/3 : FROM python', ' ---> Using cache', 'Successfully built abc'];
    const built = job({ kind: 'build', state: 'succeeded', finished: 200, progress: { ...job({}).progress, log, log_lines: 3 } });
    serve({
      'POST builds': () => job({ kind: 'build', progress: { ...job({}).progress, log: [], log_lines: 0 } }),
      'GET jobs/j1': () => built,
      'POST deployments': () => job({ id: 'd1', kind: 'deploy', created: 300 }),
      'GET jobs/d1': () => job({ id: 'd1', kind: 'deploy', created: 300, state: 'succeeded' }),
      'GET models': () => ({ models: MODELS }),
      // the list carries only a short tail of the log
      'GET jobs': () => ({ jobs: [{ ...built, progress: { ...built.progress, log: log.slice(-1) } }] }),
      'GET config': () => CONFIG
    });
    await m.build('churn/2');
    jest.advanceTimersByTime(1000);
    await settle();
    expect(m.lastBuild('churn/2')?.state).toBe('succeeded');
    expect(m.lastBuild('churn/2')?.progress.log).toEqual(log);
    await m.deploy('churn/2');
    jest.advanceTimersByTime(1000);
    await settle();
    expect(m.jobFor('churn/2')?.id).toBe('d1');
    expect(m.lastBuild('churn/2')?.progress.log).toEqual(log);
    expect(m.isBusy('churn/2')).toBe(false);
  });

  it('the next build replaces the last one', async () => {
    let id = 0;
    serve({
      'POST builds': () => job({ id: `b${++id}`, kind: 'build', created: 100 + id }),
      'GET jobs/b1': () => job({ id: 'b1', kind: 'build', state: 'failed', error: { error: 'build_error', message: 'no' } }),
      'GET jobs/b2': () => job({ id: 'b2', kind: 'build', created: 102 }),
      'GET models': () => ({ models: MODELS }),
      'GET jobs': () => ({ jobs: [] }),
      'GET config': () => CONFIG
    });
    await m.build('churn/2');
    jest.advanceTimersByTime(1000);
    await settle();
    expect(m.lastBuild('churn/2')?.state).toBe('failed');
    await m.build('churn/2');
    expect(m.lastBuild('churn/2')?.id).toBe('b2');
    expect(m.isBusy('churn/2')).toBe(true);
  });

  it('a finished build met in the job list (after a page reload) is fetched once for its whole log', async () => {
    const full = job({ id: 'b9', kind: 'build', state: 'succeeded', progress: { ...job({}).progress, log: ['a', 'b', 'c'], log_lines: 3 } });
    const calls = serve({
      'GET models': () => ({ models: MODELS }),
      'GET jobs': () => ({ jobs: [{ ...full, progress: { ...full.progress, log: ['c'] } }] }),
      'GET config': () => CONFIG,
      'GET jobs/b9': () => full
    });
    await m.refresh();
    await settle();
    expect(m.lastBuild('churn/2')?.progress.log).toEqual(['a', 'b', 'c']);
    await m.refresh();
    await settle();
    expect(m.lastBuild('churn/2')?.progress.log).toEqual(['a', 'b', 'c']);
    expect(calls.filter(c => c === 'GET jobs/b9')).toHaveLength(1);
  });

  it('promote posts the ref and alias to aliases and tracks the job apart from builds and tests', async () => {
    let body: any = null;
    serve({
      'POST aliases': init => {
        body = JSON.parse(init.body as string);
        return job({ id: 'p1', kind: 'promote' });
      }
    });
    await m.promote('churn/2');
    expect(body).toEqual({ ref: 'churn/2', alias: 'champion' });
    expect(m.actionFor('churn/2', 'promote')?.id).toBe('p1');
    expect(m.jobFor('churn/2')).toBeNull();
  });

  it('promote compares with the version that holds the alias, and only then', async () => {
    const bodies: any[] = [];
    serve({
      'GET models': () => ({
        models: [model('churn', [{ version: 2 }, { version: 1, aliases: ['champion'] }])]
      }),
      'GET jobs': () => ({ jobs: [] }),
      'GET config': () => CONFIG,
      'POST aliases': init => {
        bodies.push(JSON.parse(init.body as string));
        return job({ id: `p${bodies.length}`, kind: 'promote' });
      }
    });
    await m.refresh();
    await m.promote('churn/2');
    await m.promote('churn/1');
    await m.promote('churn/2', 'challenger');
    expect(bodies).toEqual([
      { ref: 'churn/2', alias: 'champion', compare: 'champion' },
      { ref: 'churn/1', alias: 'champion' },
      { ref: 'churn/2', alias: 'challenger' }
    ]);
  });

  it('push sends the registry of the settings, and without one says where to set it', async () => {
    let body: any = null;
    const calls = serve({
      'POST pushes': init => {
        body = JSON.parse(init.body as string);
        return job({ id: 'u1', kind: 'push' });
      }
    });
    expect(await m.push('churn/2')).toBeNull();
    expect(calls).toEqual([]);
    expect(m.errorFor('churn/2')).toContain('Image registry');
    m.setSettings({ registry: '127.0.0.1:5000' });
    await m.push('churn/2');
    expect(body).toEqual({ ref: 'churn/2', registry: '127.0.0.1:5000' });
    expect(m.actionFor('churn/2', 'push')?.id).toBe('u1');
  });

  it('the settings give deployments their default resources', async () => {
    let body: any = null;
    serve({
      'POST deployments': init => {
        body = JSON.parse(init.body as string);
        return job({});
      }
    });
    m.setSettings({ memory: '1g', pidsLimit: 64, workers: 3 });
    await m.deploy('churn/2');
    expect(body).toEqual({ ref: 'churn/2', memory: '1g', pids_limit: 64, workers: 3 });
  });

  it('the container log is fetched when opened, again at each refresh, and dropped when closed', async () => {
    const calls = serve({
      'GET deployments/churn/2/logs': () => ({ lines: ['Uvicorn running', 'GET /ping 200'] }),
      'GET models': () => ({ models: MODELS }),
      'GET jobs': () => ({ jobs: [] }),
      'GET config': () => CONFIG
    });
    expect(m.logsFor('churn/2')).toBeNull();
    await m.toggleLogs('churn/2');
    expect(m.logsFor('churn/2')).toEqual(['Uvicorn running', 'GET /ping 200']);
    await m.refresh();
    expect(calls.filter(c => c === 'GET deployments/churn/2/logs')).toHaveLength(2);
    await m.toggleLogs('churn/2');
    expect(m.logsFor('churn/2')).toBeNull();
  });

  it('auto refresh reloads the models every interval, so changes made elsewhere show', async () => {
    const calls = serve({
      'GET models': () => ({ models: MODELS }),
      'GET jobs': () => ({ jobs: [] }),
      'GET config': () => CONFIG
    });
    m.setSettings({ refreshInterval: 2000 });
    m.startAutoRefresh();
    jest.advanceTimersByTime(2000);
    await settle();
    jest.advanceTimersByTime(2000);
    await settle();
    expect(calls.filter(c => c === 'GET models')).toHaveLength(2);
    m.stopAutoRefresh();
    jest.advanceTimersByTime(10000);
    await settle();
    expect(calls.filter(c => c === 'GET models')).toHaveLength(2);
  });

  it('stop deletes the deployment by NAME/VERSION path, closes its log and reloads', async () => {
    const calls = serve({
      'GET deployments/churn/2/logs': () => ({ lines: [] }),
      'DELETE deployments/churn/2': () => ({ stopped: [{}] }),
      'GET models': () => ({ models: MODELS }),
      'GET jobs': () => ({ jobs: [] }),
      'GET config': () => CONFIG
    });
    await m.toggleLogs('churn/2');
    expect(await m.stop('churn/2')).toBe(true);
    expect(calls).toContain('DELETE deployments/churn/2');
    expect(calls).toContain('GET models');
    expect(m.logsFor('churn/2')).toBeNull();
    expect(m.isStopping('churn/2')).toBe(false);
  });

  it('a failed stop is an inline error', async () => {
    serve({
      'DELETE deployments/churn/2': () => {
        throw new PymlRequestError("no deployment of 'churn/2' is running", 404, 'not_found');
      },
      'GET models': () => ({ models: MODELS }),
      'GET jobs': () => ({ jobs: [] }),
      'GET config': () => CONFIG
    });
    expect(await m.stop('churn/2')).toBe(false);
    expect(m.errorFor('churn/2')).toBe("no deployment of 'churn/2' is running");
  });

  it('dispose stops polling', async () => {
    const calls = serve({ 'POST deployments': () => job({}), 'GET jobs/j1': () => job({}) });
    await m.deploy('churn/2');
    m.dispose();
    jest.advanceTimersByTime(5000);
    await settle();
    expect(calls.filter(c => c === 'GET jobs/j1')).toHaveLength(0);
    expect(m.isDisposed).toBe(true);
  });
});

describe('gatesOf', () => {
  const contract = { name: 'contract', ok: true, detail: 'the contract report passed' };
  const parity = { name: 'parity', ok: false, detail: 'http: 1 of 4 rows differ' };

  it('reads the gates a promotion passed from its result', () => {
    const promoted = job({ kind: 'promote', state: 'succeeded', result: { alias: 'champion', gates: [contract] } });
    expect(gatesOf(promoted)).toEqual([contract]);
  });

  it('reads the gates of a refused promotion from its error details', () => {
    const refused = job({
      kind: 'promote',
      state: 'failed',
      error: { error: 'promotion_refused', message: 'the parity gate failed', details: { gates: [contract, parity] } }
    });
    expect(gatesOf(refused)).toEqual([contract, parity]);
  });

  it('has none while the gates run, or when the promotion failed before any gate', () => {
    expect(gatesOf(job({ kind: 'promote' }))).toEqual([]);
    expect(gatesOf(job({ kind: 'promote', state: 'failed', error: { error: 'not_found', message: 'no such alias' } })))
      .toEqual([]);
  });
});
