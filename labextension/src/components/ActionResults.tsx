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

function formatNumber(value: number | null | undefined): string {
  return value === null || value === undefined ? '–' : Number(value.toPrecision(4)).toString();
}

function formatShare(share: number | null | undefined): string {
  return share === null || share === undefined ? '–' : `${(share * 100).toFixed(1)}%`;
}

/** How the promoted version's predictions of the stored sample differ from the alias's previous version. */
function ComparisonTable(props: { comparison: any }): JSX.Element {
  const { comparison } = props;
  return (
    <div className="pyml-comparison">
      <div className="pyml-comparison-head">
        {comparison.candidate} vs {comparison.other} on {comparison.n_rows} rows
        {comparison.note ? ` (${comparison.note})` : ''}
      </div>
      {(comparison.columns ?? []).length > 0 && (
        <table>
          <thead>
            <tr>
              <th>output</th>
              <th>mean |Δ|</th>
              <th>max |Δ|</th>
              <th>changed</th>
            </tr>
          </thead>
          <tbody>
            {comparison.columns.map((c: any) => (
              <tr key={c.column} title={c.note || undefined}>
                <td>{c.column}</td>
                <td>{formatNumber(c.mean_abs_diff)}</td>
                <td>{formatNumber(c.max_abs_diff)}</td>
                <td>{formatShare(c.changed_share)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

/**
 * A promotion of one version: its progress while the gates run, then where the alias points now, every
 * gate's result and how its predictions differ from the version it replaced; or, when refused, the one-paragraph error naming the gate and the gates' results.
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
        {job.result.comparison && <ComparisonTable comparison={job.result.comparison} />}
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
