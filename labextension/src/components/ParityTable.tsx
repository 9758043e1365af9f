import * as React from 'react';

import { IParityReport } from '../tokens';

export const MATCH = '✓';

function cell(value: unknown): string {
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

/** "notebook 1.2 ms · container 8 ms" (top-level timings) and, with `nested`, also "server: predict 0.4 ms". */
export function latencyText(latency: IParityReport['latency'], nested = false): string {
  return Object.entries(latency ?? {})
    .map(([key, value]) => {
      const label = key.replace(/_ms$/, '');
      if (typeof value === 'number') {
        return `${label} ${ms(value)}`;
      }
      if (!nested) {
        return '';
      }
      const inner = Object.entries(value)
        .map(([k, v]) => `${k.replace(/_ms$/, '')} ${ms(Number(v))}`)
        .join(', ');
      return `${label}: ${inner}`;
    })
    .filter(text => text)
    .join(' · ');
}

type Group = 'input' | 'notebook' | 'target' | 'diff' | 'match';

/** Which part of the table a column of `rows` belongs to, and its name without the suffix. */
export function classify(column: string, target: string): { group: Group; label: string } {
  if (column === 'match') {
    return { group: 'match', label: '' };
  }
  if (column === '|diff|') {
    return { group: 'diff', label: '|Δ|' };
  }
  if (column.endsWith(' (notebook)')) {
    return { group: 'notebook', label: column.slice(0, -' (notebook)'.length) };
  }
  const suffix = ` (${target})`;
  if (column.endsWith(suffix)) {
    return { group: 'target', label: column.slice(0, -suffix.length) };
  }
  return { group: 'input', label: column.replace(/^input /, '') };
}

const ORDER: Group[] = ['input', 'notebook', 'target', 'diff', 'match'];

/**
 * Test predictions: each sample row, the notebook's prediction, the container's, the difference and ✓/✗.
 */
export function ParityTable(props: { report: IParityReport }): JSX.Element {
  const { report } = props;
  const { columns, data } = report.rows;
  const cols = columns
    .map((name, index) => ({ index, ...classify(name, report.target) }))
    .sort((a, b) => ORDER.indexOf(a.group) - ORDER.indexOf(b.group) || a.index - b.index);
  const spans = ORDER.map(group => ({ group, span: cols.filter(c => c.group === group).length })).filter(
    g => g.span > 0
  );
  const titles: Record<Group, string> = {
    input: 'sample input',
    notebook: 'notebook',
    target: report.target,
    diff: '',
    match: ''
  };
  const matchIndex = columns.indexOf('match');
  const latency = latencyText(report.latency);
  const latencyDetail = latencyText(report.latency, true);
  const matching = report.n_rows - report.n_mismatched;

  return (
    <div className={`pyml-parity ${report.ok ? 'pyml-parity-ok' : 'pyml-parity-failed'}`}>
      <div className="pyml-parity-summary">
        <span className={report.ok ? 'pyml-match' : 'pyml-mismatch'}>{report.ok ? '✓' : '✗'}</span>{' '}
        {matching}/{report.n_rows} rows match (notebook vs {report.target})
        {report.max_abs_diff !== null && (
          <span className="pyml-parity-diff"> · max |Δ| {cell(report.max_abs_diff)}</span>
        )}
        {latency && (
          <div className="pyml-parity-latency" title={latencyDetail}>
            {latency}
          </div>
        )}
      </div>
      {report.problems.map((problem, i) => (
        <div className="pyml-error" key={i}>
          {problem}
        </div>
      ))}
      <div className="pyml-parity-scroll">
        <table className="pyml-parity-table">
          <thead>
            <tr>
              {spans.map(({ group, span }) => (
                <th key={group} colSpan={span} className={`pyml-parity-group-${group}`}>
                  {titles[group]}
                </th>
              ))}
            </tr>
            <tr>
              {cols.map(c => (
                <th key={c.index} className={`pyml-parity-col-${c.group}`}>
                  {c.label}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {data.map((row, r) => {
              const match = matchIndex < 0 || row[matchIndex] === MATCH;
              return (
                <tr key={r} className={`pyml-parity-row ${match ? 'pyml-row-match' : 'pyml-row-mismatch'}`}>
                  {cols.map(c =>
                    c.group === 'match' ? (
                      <td key={c.index} className={match ? 'pyml-match' : 'pyml-mismatch'} title={match ? 'match' : 'mismatch'}>
                        {match ? '✓' : '✗'}
                      </td>
                    ) : (
                      <td key={c.index} className={`pyml-parity-col-${c.group}`}>
                        {cell(row[c.index])}
                      </td>
                    )
                  )}
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </div>
  );
}
