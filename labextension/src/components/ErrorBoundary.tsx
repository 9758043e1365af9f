import * as React from 'react';

/**
 * Keeps one broken part of the panel (e.g. an unexpected server answer) from blanking the whole panel.
 */
export class ErrorBoundary extends React.Component<{ what: string; children?: React.ReactNode }, { error: Error | null }> {
  state = { error: null as Error | null };

  static getDerivedStateFromError(error: Error): { error: Error } {
    return { error };
  }

  componentDidCatch(error: Error): void {
    console.error(`pyml: could not show ${this.props.what}`, error);
  }

  render(): React.ReactNode {
    if (this.state.error) {
      return (
        <div className="pyml-error">
          Could not show {this.props.what}: {this.state.error.message}
        </div>
      );
    }
    return this.props.children;
  }
}
