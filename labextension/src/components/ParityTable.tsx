import * as React from 'react';

import { IParityTable, ITargetResult } from '../tokens';

export const MATCH = '✓';
export const MISMATCH = '✗';

/** A cell as the table shows it: floats to 8 significant digits, missing values empty. */
export function cell(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(8)));
  }
  return String(value);
}

function ms(value: number): string {
  return value < 10 ? `${value.toFixed(1)} ms` : `${Math.round(value)} ms`;
}

/** "1.2 ms" for a target's prediction, and with `nested` also "start and load 850 ms, server predict 0.4 ms". */
export function latencyText(latency: ITargetResult['latency'], nested = false): string {
  const predict = latency?.predict_ms;
  if (typeof predict !== 'number') {
    return '';
  }
  if (!nested) {
    return ms(predict);
  }
  const extra: string[] = [];
  if (typeof latency.load_ms === 'number') {
    extra.push(`start and load ${ms(latency.load_ms)}`);
  }
  const server = latency.server;
  if (server && typeof server === 'object') {
    for (const [phase, value] of Object.entries(server)) {
      extra.push(`server ${phase.replace(/_ms$/, '')} ${ms(Number(value))}`);
    }
  }
  return extra.length ? `${ms(predict)} (${extra.join(', ')})` : ms(predict);
}

/** The first column of every group after the first, which gets a separating border. */
export function groupStarts(groups: IParityTable['table']['groups']): Set<number> {
  const starts = new Set<number>();
  let j = 0;
  for (const group of groups) {
    if (j > 0) {
      starts.add(j);
    }
    j += group.columns.length;
  }
  return starts;
}

function TargetLine(props: { target: ITargetResult }): JSX.Element {
  const { target } = props;
  const detail = target.status === 'match' || target.status === 'mismatch' ? target.summary : target.reason;
  return (
    <li className={`pyml-target pyml-target-${target.status}`} data-key={target.key}>
      <span className="pyml-target-label">{target.label}</span>{' '}
      <span className="pyml-target-status">{target.status}</span>
      {detail && <span className="pyml-target-detail">: {detail}</span>}
      {target.latency_text && target.latency_text !== '-' && (
        <span className="pyml-target-latency" title={latencyText(target.latency, true)}>
          {' '}
          · {latencyText(target.latency)}
        </span>
      )}
    </li>
  );
}

/**
 * One parity table across every target: the verdict, a line per target (status, why, latency), then a row
 * per input row with a column group per target; cells that differ from the notebook are marked.
 */
export function ParityTable(props: { table: IParityTable }): JSX.Element {
  const { table } = props;
  const { groups, data, bad } = table.table;
  const badCells = new Set(bad.map(([r, c]) => `${r}:${c}`));
  const mismatched = new Set(table.table.mismatched_rows);
  const starts = groupStarts(groups);
  const columns = groups.flatMap(g => g.columns);

  return (
    <div className={`pyml-parity ${table.ok ? 'pyml-parity-ok' : 'pyml-parity-failed'}`}>
      <div className="pyml-parity-summary" title={table.latency_text}>
        {table.verdict}
      </div>
      <ul className="pyml-targets">
        {table.targets
          .filter(t => t.key !== 'notebook')
          .map(t => (
            <TargetLine target={t} key={t.key} />
          ))}
      </ul>
      <div className="pyml-parity-scroll">
        <table className="pyml-parity-table">
          <thead>
            <tr>
              {groups.map((g, i) => (
                <th key={i} colSpan={g.columns.length} className="pyml-parity-group">
                  {g.label}
                </th>
              ))}
            </tr>
            <tr>
              {columns.map((c, j) => (
                <th key={j} className={starts.has(j) ? 'pyml-parity-group-start' : undefined}>
                  {c === '|diff|' ? '|Δ|' : c === 'match' ? '' : c}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {data.map((row, r) => {
              const match = !mismatched.has(r);
              return (
                <tr key={r} className={`pyml-parity-row ${match ? 'pyml-row-match' : 'pyml-row-mismatch'}`}>
                  {row.map((value, j) => {
                    const classes = [starts.has(j) ? 'pyml-parity-group-start' : ''];
                    if (columns[j] === 'match') {
                      classes.push(value === MATCH ? 'pyml-match' : 'pyml-mismatch');
                    } else if (badCells.has(`${r}:${j}`)) {
                      classes.push('pyml-cell-differs');
                    } else if (columns[j] === 'skipped' || columns[j] === 'failed') {
                      classes.push('pyml-cell-absent');
                    }
                    return (
                      <td key={j} className={classes.filter(c => c).join(' ') || undefined}>
                        {cell(value)}
                      </td>
                    );
                  })}
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </div>
  );
}
