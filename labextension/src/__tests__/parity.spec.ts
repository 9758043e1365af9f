/**
 * How the all-targets parity table reads latencies and lays out its column groups.
 */
import { cell, groupStarts, latencyText } from '../components/ParityTable';

describe('latencyText', () => {
  const http = { predict_ms: 18.6, server: { parse_ms: 0.05, predict_ms: 0.42 } };

  it('reads the prediction milliseconds', () => {
    expect(latencyText(http)).toBe('19 ms');
    expect(latencyText({ predict_ms: 1.234 })).toBe('1.2 ms');
  });

  it('adds the start-up and the server phases when asked', () => {
    expect(latencyText(http, true)).toBe('19 ms (server parse 0.1 ms, server predict 0.4 ms)');
    expect(latencyText({ predict_ms: 3, load_ms: 850 }, true)).toBe('3.0 ms (start and load 850 ms)');
  });

  it('is empty for a target that did not run', () => {
    expect(latencyText({})).toBe('');
  });
});

describe('groupStarts', () => {
  it('marks the first column of every group but the first', () => {
    const groups = [
      { label: 'input', columns: ['x'] },
      { label: 'notebook', columns: ['y'] },
      { label: 'fresh process', columns: ['y', '|diff|', 'match'] },
      { label: 'Spark', columns: ['skipped'] }
    ];
    expect([...groupStarts(groups)]).toEqual([1, 2, 5]);
  });
});

describe('cell', () => {
  it('shows floats to 8 significant digits and missing values as empty', () => {
    expect(cell(0.1 + 0.2)).toBe('0.3');
    expect(cell(3)).toBe('3');
    expect(cell(null)).toBe('');
    expect(cell('paris')).toBe('paris');
  });
});
