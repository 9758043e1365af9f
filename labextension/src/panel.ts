import { ReactWidget, SidePanel } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Panel } from '@lumino/widgets';
import * as React from 'react';

import { PymlView } from './components/PymlView';
import { pymlIcon } from './icons';
import { PymlModel } from './model';

/**
 * The left sidebar panel: every registered model and its versions, with Deploy / Test / Stop.
 * Refreshes whenever it is shown.
 */
export class PymlPanel extends SidePanel {
  constructor(readonly model: PymlModel) {
    super({ content: new Panel() });
    this.id = 'pyml-panel';
    this.addClass('pyml-panel');
    this.title.icon = pymlIcon;
    this.title.caption = 'pyml: registered models';
    const view = ReactWidget.create(React.createElement(PymlView, { model }));
    view.addClass('pyml-view-widget');
    this.addWidget(view);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.model.refresh();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.model.dispose();
    super.dispose();
  }
}
