import * as React from 'react';

import { IJob } from '../tokens';

const TITLES: Record<string, string> = {
  build: 'Build',
  deploy: 'Deploy',
  test: 'Test',
  promote: 'Promote',
  push: 'Push'
};

const FINAL_LABELS: Record<string, string> = {
  succeeded: 'done',
  failed: 'failed',
  lost: 'lost (the Jupyter server restarted while it ran)'
};

/**
 * A running or finished job: stage, a progress bar (indeterminate when the fraction is unknown), a
 * collapsible log tail, and the error when it failed.
 */
export function JobProgress(props: { job: IJob }): JSX.Element {
  const { job } = props;
  const { progress } = job;
  const active = job.state === 'queued' || job.state === 'running';
  const percent = progress.fraction === null ? null : Math.round(progress.fraction * 100);
  const [open, setOpen] = React.useState(false);
  const logRef = React.useRef<HTMLPreElement>(null);

  React.useEffect(() => {
    // keep the newest line in view while the log is open
    if (open && logRef.current) {
      logRef.current.scrollTop = logRef.current.scrollHeight;
    }
  }, [open, progress.log_lines]);

  const title = TITLES[job.kind] ?? job.kind;
  const label = `${title}: ${active ? progress.stage : FINAL_LABELS[job.state] ?? job.state}`;
  return (
    <div className={`pyml-job pyml-job-${job.state}`} data-job-id={job.id} data-kind={job.kind}>
      <div className="pyml-job-header">
        <span className="pyml-job-stage">{label}</span>
        {active && percent !== null && <span className="pyml-job-percent">{percent}%</span>}
      </div>
      {active && (
        <div
          className={`pyml-progress${percent === null ? ' pyml-progress-indeterminate' : ''}`}
          role="progressbar"
          aria-valuemin={0}
          aria-valuemax={100}
          aria-valuenow={percent ?? undefined}
        >
          <div className="pyml-progress-bar" style={percent === null ? {} : { width: `${percent}%` }} />
        </div>
      )}
      {job.error && <div className="pyml-error">{job.error.message}</div>}
      {progress.log.length > 0 && (
        <details className="pyml-log" open={open} onToggle={e => setOpen((e.target as HTMLDetailsElement).open)}>
          <summary>
            {title} log ({progress.log_lines} lines)
          </summary>
          <pre ref={logRef}>{progress.log.join('\n')}</pre>
        </details>
      )}
    </div>
  );
}
