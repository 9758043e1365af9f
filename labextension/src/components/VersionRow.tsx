import * as React from 'react';

import { PymlModel } from '../model';
import { IModelVersion, refOf } from '../tokens';
import { PromotionResult, PushResult } from './ActionResults';
import { ErrorBoundary } from './ErrorBoundary';
import { JobProgress } from './JobProgress';
import { ParityTable } from './ParityTable';

function formatBytes(size: number | null): string {
  if (!size) {
    return '';
  }
  const mb = size / (1024 * 1024);
  return mb >= 1024 ? `${(mb / 1024).toFixed(1)} GB` : `${Math.round(mb)} MB`;
}

function Badge(props: { className: string; title: string; children: React.ReactNode }): JSX.Element {
  return (
    <span className={`pyml-badge ${props.className}`} title={props.title}>
      {props.children}
    </span>
  );
}

/**
 * One model version: status badges (contract, image, deployment), its actions, and what they produced
 * (a job's progress and log, test predictions, errors).
 */
export function VersionRow(props: { model: PymlModel; name: string; version: IModelVersion }): JSX.Element {
  const { model, name, version } = props;
  const ref = refOf(name, version.version);
  const job = model.jobFor(ref);
  const busy = model.isBusy(ref);
  const test = model.testFor(ref);
  const error = model.errorFor(ref);
  const deployment = version.deployment;
  const running = deployment?.status === 'running';
  const stopping = model.isStopping(ref);
  const logs = model.logsFor(ref);
  const promotion = model.actionFor(ref, 'promote');
  const push = model.actionFor(ref, 'push');
  const promoting = !!promotion && (promotion.state === 'queued' || promotion.state === 'running');
  const pushing = !!push && (push.state === 'queued' || push.state === 'running');

  return (
    <li className="pyml-version" data-ref={ref}>
      <div className="pyml-version-line">
        <span className="pyml-version-number" title={version.uri ?? version.model_uri}>
          v{version.version}
        </span>
        <span className="pyml-badges">
          {(version.aliases ?? []).map(alias => (
            <Badge className="pyml-alias" title={`${name}@${alias} points at this version`} key={alias}>
              @{alias}
            </Badge>
          ))}
          {version.contract_status === 'passed' && (
            <Badge className="pyml-contract-passed" title="The contract check passed when it was registered">
              ✓ contract
            </Badge>
          )}
          {version.contract_status === 'failed' && (
            <Badge className="pyml-contract-failed" title="The contract check failed">
              ✗ contract
            </Badge>
          )}
          {version.image && (
            <Badge
              className="pyml-image-built"
              title={`${version.image.tag} ${version.image.id.slice(0, 19)} ${formatBytes(version.image.size_bytes)}`}
            >
              image
            </Badge>
          )}
          {deployment ? (
            <Badge className={`pyml-status-${deployment.status}`} title={`container ${deployment.container_id.slice(0, 12)}`}>
              {deployment.status}
            </Badge>
          ) : (
            !busy && (
              <Badge className="pyml-status-not-deployed" title="No container runs this version">
                not deployed
              </Badge>
            )
          )}
        </span>
        <span className="pyml-actions">
          {!version.image && !running && (
            <button
              className="jp-Button jp-mod-styled pyml-button pyml-build"
              disabled={busy}
              onClick={() => void model.build(ref)}
              title="Build the Docker image of this version (its log streams below)"
            >
              {busy && job?.kind === 'build' ? 'Building…' : 'Build'}
            </button>
          )}
          {!running && (
            <button
              className="jp-Button jp-mod-styled jp-mod-accept pyml-button pyml-deploy"
              disabled={busy}
              onClick={() => void model.deploy(ref)}
              title={version.image ? 'Run the image as a container' : 'Build the image, then run it as a container'}
            >
              {busy ? 'Deploying…' : 'Deploy'}
            </button>
          )}
          {(running || version.image) && (
            <button
              className="jp-Button jp-mod-styled jp-mod-accept pyml-button pyml-test"
              disabled={test?.running || stopping || busy}
              onClick={() => void model.test(ref)}
              title={
                'Predict the stored sample here, in a fresh process, in the container (HTTP and gRPC; deployed ' +
                'first if needed) and on Spark, and compare every target with the notebook'
              }
            >
              {test?.running ? 'Testing…' : 'Test'}
            </button>
          )}
          {version.contract_status === 'passed' && !(version.aliases ?? []).includes('champion') && (
            <button
              className="jp-Button jp-mod-styled pyml-button pyml-promote"
              disabled={promoting || busy}
              onClick={() => void model.promote(ref)}
              title="Point the alias champion at this version, once its contract and a parity run pass"
            >
              {promoting ? 'Promoting…' : 'Promote'}
            </button>
          )}
          {version.image && (
            <button
              className="jp-Button jp-mod-styled pyml-button pyml-push"
              disabled={pushing}
              onClick={() => void model.push(ref)}
              title={`Push the image (and its alias tags) to ${model.settings.registry || 'the registry of the settings'}`}
            >
              {pushing ? 'Pushing…' : 'Push'}
            </button>
          )}
          {deployment && (
            <button
              className="jp-Button jp-mod-styled pyml-button pyml-logs-toggle"
              onClick={() => void model.toggleLogs(ref)}
              title="Show the container's recent log lines (refreshed while shown)"
            >
              {logs === null ? 'Log' : 'Hide log'}
            </button>
          )}
          {deployment && (
            <button
              className="jp-Button jp-mod-styled jp-mod-reject pyml-button pyml-stop"
              disabled={stopping}
              onClick={() => void model.stop(ref)}
              title="Stop and remove the container"
            >
              {stopping ? 'Stopping…' : 'Stop'}
            </button>
          )}
        </span>
      </div>
      {running && deployment && (
        <div className="pyml-endpoint">
          <a href={deployment.url} target="_blank" rel="noopener noreferrer">
            {deployment.url}
          </a>
        </div>
      )}
      {error && <div className="pyml-error">{error}</div>}
      {job && (busy || job.state === 'failed' || job.state === 'lost') && <JobProgress job={job} />}
      {logs !== null && (
        <pre className="pyml-container-log" title="The container's recent log lines">
          {logs.length ? logs.join('\n') : '(the container has not logged anything yet)'}
        </pre>
      )}
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
