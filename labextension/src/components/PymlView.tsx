import * as React from 'react';
import { launchIcon, refreshIcon, UseSignal } from '@jupyterlab/ui-components';

import { PymlModel } from '../model';
import { ModelList } from './ModelList';

function Header(props: { model: PymlModel }): JSX.Element {
  const { model } = props;
  const ui = model.config?.mlflow_ui_url;
  return (
    <div className="pyml-header">
      <span className="pyml-title">Models</span>
      {ui && (
        <a className="pyml-mlflow-link" href={ui} target="_blank" rel="noopener noreferrer" title="Open the MLflow UI">
          MLflow <launchIcon.react tag="span" className="pyml-inline-icon" />
        </a>
      )}
      <button
        className={`jp-ToolbarButtonComponent pyml-refresh${model.refreshing ? ' pyml-refreshing' : ''}`}
        title="Refresh the list of models"
        disabled={model.refreshing}
        onClick={() => void model.refresh()}
      >
        <refreshIcon.react tag="span" className="pyml-refresh-icon" />
      </button>
    </div>
  );
}

/** The whole panel: header, errors, the model list and the store it reads. Re-renders on `model.changed`. */
export function PymlView(props: { model: PymlModel }): JSX.Element {
  const { model } = props;
  return (
    <UseSignal signal={model.changed}>
      {() => (
        <div className="pyml-view">
          <Header model={model} />
          {model.error && <div className="pyml-error pyml-list-error">{model.error}</div>}
          {!model.loaded && !model.error && <div className="pyml-loading">Loading models…</div>}
          <div className="pyml-body">
            <ModelList model={model} />
          </div>
          {model.config && (
            <div className="pyml-footer" title={`MLflow tracking store: ${model.config.tracking_uri}`}>
              {model.config.tracking_uri}
            </div>
          )}
        </div>
      )}
    </UseSignal>
  );
}
