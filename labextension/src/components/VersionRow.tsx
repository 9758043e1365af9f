import * as React from 'react';

import { PymlModel } from '../model';
import { IJob, IModelVersion, refOf } from '../tokens';
import { PromotionResult, PushResult } from './ActionResults';
import { ErrorBoundary } from './ErrorBoundary';
import { JobProgress } from './JobProgress';
import { ParityTable } from './ParityTable';
import { VersionActions } from './VersionActions';
import { VersionBadges } from './VersionBadges';

function showsDeployJob(job: IJob | null): job is IJob {
  return !!job && job.state !== 'succeeded';
}

/** The container's recent log lines, while its log is open. */
function ContainerLog(props: { lines: string[] }): JSX.Element {
  return (
    <pre className="pyml-container-log" title="The container's recent log lines">
      {props.lines.length ? props.lines.join('\n') : '(the container has not logged anything yet)'}
    </pre>
  );
}

/**
 * One model version: status badges (contract, image, push, deployment), its actions, and what they produced:
 * the last build with its log (folded once it ended, kept until the next build), a running or failed
 * deployment, the container's log, the promotion, the push, the test table, errors.
 */
export function VersionRow(props: { model: PymlModel; name: string; version: IModelVersion }): JSX.Element {
  const { model, name, version } = props;
  const ref = refOf(name, version.version);
  const build = model.lastBuild(ref);
  const deploy = model.actionFor(ref, 'deploy');
  const test = model.testFor(ref);
  const error = model.errorFor(ref);
  const deployment = version.deployment;
  const logs = model.logsFor(ref);
  const promotion = model.actionFor(ref, 'promote');
  const push = model.actionFor(ref, 'push');

  return (
    <li className="pyml-version" data-ref={ref}>
      <div className="pyml-version-line">
        <span className="pyml-version-number" title={version.uri ?? version.model_uri}>
          v{version.version}
        </span>
        <VersionBadges name={name} version={version} busy={model.isBusy(ref)} />
        <VersionActions model={model} name={name} version={version} />
      </div>
      {deployment?.status === 'running' && (
        <div className="pyml-endpoint">
          <a href={deployment.url} target="_blank" rel="noopener noreferrer">
            {deployment.url}
          </a>
        </div>
      )}
      {error && <div className="pyml-error">{error}</div>}
      {build && <JobProgress job={build} key={build.id} />}
      {showsDeployJob(deploy) && <JobProgress job={deploy} key={deploy.id} />}
      {logs !== null && <ContainerLog lines={logs} />}
      {promotion && <PromotionResult job={promotion} />}
      {push && <PushResult job={push} />}
      {test?.running && test.job && <JobProgress job={test.job} />}
      {test?.error && <div className="pyml-error">{test.error}</div>}
      {test?.table && (
        <ErrorBoundary what="the test predictions">
          <ParityTable table={test.table} />
        </ErrorBoundary>
      )}
    </li>
  );
}
