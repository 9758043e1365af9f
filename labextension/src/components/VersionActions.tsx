import * as React from 'react';

import { PymlModel } from '../model';
import { IModelVersion, refOf } from '../tokens';

function Action(props: {
  name: string;
  label: string;
  title: string;
  onClick: () => unknown;
  disabled?: boolean;
  style?: 'accept' | 'reject';
}): JSX.Element {
  const style = props.style ? ` jp-mod-${props.style}` : '';
  return (
    <button
      className={`jp-Button jp-mod-styled${style} pyml-button pyml-${props.name}`}
      disabled={props.disabled}
      onClick={() => void props.onClick()}
      title={props.title}
    >
      {props.label}
    </button>
  );
}

function isActive(state: string | undefined): boolean {
  return state === 'queued' || state === 'running';
}

/** The buttons of one version, each shown when it applies and disabled while it (or what it needs) runs. */
export function VersionActions(props: { model: PymlModel; name: string; version: IModelVersion }): JSX.Element {
  const { model, name, version } = props;
  const ref = refOf(name, version.version);
  const busy = model.isBusy(ref);
  const building = busy && model.jobFor(ref)?.kind === 'build';
  const testing = !!model.testFor(ref)?.running;
  const promoting = isActive(model.actionFor(ref, 'promote')?.state);
  const pushing = isActive(model.actionFor(ref, 'push')?.state);
  const stopping = model.isStopping(ref);
  const deployment = version.deployment;
  const running = deployment?.status === 'running';
  const logsOpen = model.logsFor(ref) !== null;
  return (
    <span className="pyml-actions">
      {!version.image && !running && (
        <Action name="build" label={building ? 'Building…' : 'Build'} disabled={busy} onClick={() => model.build(ref)}
          title="Build the Docker image of this version (its log streams below)" />
      )}
      {!running && (
        <Action name="deploy" label={busy ? 'Deploying…' : 'Deploy'} style="accept" disabled={busy}
          onClick={() => model.deploy(ref)}
          title={version.image ? 'Run the image as a container' : 'Build the image, then run it as a container'} />
      )}
      {(running || version.image) && (
        <Action name="test" label={testing ? 'Testing…' : 'Test'} style="accept" disabled={testing || stopping || busy}
          onClick={() => model.test(ref)}
          title={'Predict the stored sample here, in a fresh process, in the container (HTTP and gRPC; deployed ' +
            'first if needed) and on Spark, and compare every target with the notebook'} />
      )}
      {version.contract_status === 'passed' && !(version.aliases ?? []).includes('champion') && (
        <Action name="promote" label={promoting ? 'Promoting…' : 'Promote'} disabled={promoting || busy}
          onClick={() => model.promote(ref)}
          title="Point the alias champion at this version, once its contract and a parity run pass" />
      )}
      {version.image && (
        <Action name="push" label={pushing ? 'Pushing…' : 'Push'} disabled={pushing} onClick={() => model.push(ref)}
          title={`Push the image (and its alias tags) to ${model.settings.registry || 'the registry of the settings'}`} />
      )}
      {deployment && (
        <Action name="logs-toggle" label={logsOpen ? 'Hide log' : 'Log'} onClick={() => model.toggleLogs(ref)}
          title="Show the container's recent log lines (refreshed while shown)" />
      )}
      {deployment && (
        <Action name="stop" label={stopping ? 'Stopping…' : 'Stop'} style="reject" disabled={stopping}
          onClick={() => model.stop(ref)} title="Stop and remove the container" />
      )}
    </span>
  );
}
