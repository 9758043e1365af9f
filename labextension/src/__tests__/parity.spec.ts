/**
 * How the test-predictions table reads a parity report's columns and latency.
 */
import { classify, latencyText } from '../components/ParityTable';

describe('classify', () => {
  it('splits inputs, notebook and target predictions, the difference and the verdict', () => {
    const columns = ['x1', 'city', 'score (notebook)', 'score (container)', 'label (notebook)', 'label (container)', '|diff|', 'match'];
    expect(columns.map(c => classify(c, 'container'))).toEqual([
      { group: 'input', label: 'x1' },
      { group: 'input', label: 'city' },
      { group: 'notebook', label: 'score' },
      { group: 'target', label: 'score' },
      { group: 'notebook', label: 'label' },
      { group: 'target', label: 'label' },
      { group: 'diff', label: '|Δ|' },
      { group: 'match', label: '' }
    ]);
  });

  it('an input column renamed to avoid a clash keeps its own name', () => {
    expect(classify('input match', 'container')).toEqual({ group: 'input', label: 'match' });
  });

  it('the target suffix follows the report target', () => {
    expect(classify('y (batch)', 'batch')).toEqual({ group: 'target', label: 'y' });
  });
});

describe('latencyText', () => {
  const latency = { notebook_ms: 1.234, container_ms: 18.6, server: { predict_ms: 0.42 } };

  it('reads the top-level milliseconds', () => {
    expect(latencyText(latency)).toBe('notebook 1.2 ms · container 19 ms');
  });

  it('adds the nested server timings when asked', () => {
    expect(latencyText(latency, true)).toBe('notebook 1.2 ms · container 19 ms · server: predict 0.4 ms');
  });
});
