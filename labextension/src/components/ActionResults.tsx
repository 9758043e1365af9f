import * as React from 'react';

import { gatesOf } from '../model';
import { IJob } from '../tokens';
import { JobProgress } from './JobProgress';

/** Each gate of a promotion with its verdict and what it found; the refusing one stands out. */
function GateList(props: { job: IJob }): JSX.Element | null {
  const gates = gatesOf(props.job);
  if (!gates.length) {
    return null;
  }
  return (
    <ul className="pyml-gates">
      {gates.map(g => (
        <li className={`pyml-gate ${g.ok ? 'pyml-gate-passed' : 'pyml-gate-failed'}`} key={g.name} data-gate={g.name}>
          <span className="pyml-gate-mark">{g.ok ? '✓' : '✗'}</span> <b>{g.name}</b>: {g.detail}
        </li>
      ))}
    </ul>
  );
}

/**
 * A promotion of one version: its progress while the gates run, then where the alias points now and every
 * gate's result; or, when refused, the one-paragraph error naming the gate and the gates' results.
 */
export function PromotionResult(props: { job: IJob }): JSX.Element | null {
  const { job } = props;
  if (job.state === 'succeeded' && job.result) {
    const { alias, version, previous } = job.result;
    return (
      <div className="pyml-promoted">
        @{alias} → v{version}
        {previous ? ` (was v${previous})` : ''}
        <GateList job={job} />
      </div>
    );
  }
  if (job.state === 'succeeded') {
    return null;
  }
  return (
    <div className="pyml-promotion">
      <JobProgress job={job} />
      {job.state === 'failed' && <GateList job={job} />}
    </div>
  );
}

/** A push of one version's image: its progress (layers as they go), then the tags the registry holds. */
export function PushResult(props: { job: IJob }): JSX.Element | null {
  const { job } = props;
  if (job.state === 'succeeded' && job.result) {
    return (
      <div className="pyml-pushed">
        pushed {(job.result.tags ?? []).map((t: string) => `${job.result.repository}:${t}`).join(', ')}
      </div>
    );
  }
  return job.state === 'succeeded' ? null : <JobProgress job={job} />;
}
