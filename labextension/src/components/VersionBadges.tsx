import * as React from 'react';

import { IModelVersion } from '../tokens';

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
 * What exists for one version: its aliases, contract status, image, where the image was pushed, and its
 * deployment (or none, unless a build or deployment is on its way: `busy`).
 */
export function VersionBadges(props: { name: string; version: IModelVersion; busy: boolean }): JSX.Element {
  const { name, version, busy } = props;
  const deployment = version.deployment;
  return (
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
      {version.pushed_image && (
        <Badge className="pyml-image-pushed" title={`pushed as ${version.pushed_image}`}>
          pushed
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
  );
}
