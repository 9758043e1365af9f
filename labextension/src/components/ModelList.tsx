import * as React from 'react';
import { launchIcon } from '@jupyterlab/ui-components';

import { PymlModel } from '../model';
import { ErrorBoundary } from './ErrorBoundary';
import { VersionRow } from './VersionRow';

/** Every registered model with its versions, newest first. */
export function ModelList(props: { model: PymlModel }): JSX.Element {
  const { model } = props;
  if (model.loaded && model.models.length === 0) {
    return (
      <div className="pyml-empty">
        No registered models yet. In a notebook: <code>%load_ext pyml_jupyter</code>, then{' '}
        <code>%pyml_register MyModel my_model</code>.
      </div>
    );
  }
  return (
    <ul className="pyml-models">
      {model.models.map(m => (
        <li className="pyml-model" data-name={m.name} key={m.name}>
          <div className="pyml-model-header">
            <span className="pyml-model-name" title={m.name}>
              {m.name}
            </span>
            {m.latest_version !== null && <span className="pyml-model-latest">latest v{m.latest_version}</span>}
            {m.mlflow_ui_url && (
              <a
                className="pyml-mlflow-model-link"
                href={m.mlflow_ui_url}
                target="_blank"
                rel="noopener noreferrer"
                title="Open in the MLflow UI"
              >
                <launchIcon.react tag="span" className="pyml-inline-icon" />
              </a>
            )}
          </div>
          {m.description && <div className="pyml-model-description">{m.description}</div>}
          <ul className="pyml-versions">
            {m.versions.map(v => (
              <ErrorBoundary what={`${m.name}/${v.version}`} key={v.version}>
                <VersionRow model={model} name={m.name} version={v} />
              </ErrorBoundary>
            ))}
          </ul>
        </li>
      ))}
    </ul>
  );
}
