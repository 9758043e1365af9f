import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, InputDialog } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { pymlIcon } from './icons';
import { PymlModel } from './model';
import { PymlPanel } from './panel';
import { IDeployOptions } from './tokens';

namespace CommandIDs {
  export const refresh = 'pyml:refresh';
  export const build = 'pyml:build';
  export const deploy = 'pyml:deploy';
  export const test = 'pyml:test';
  export const promote = 'pyml:promote';
  export const push = 'pyml:push';
  export const stop = 'pyml:stop';
}

/**
 * Wire the model, the sidebar panel and the commands; all behaviour lives in model.ts and components/.
 */
const PLUGIN_ID = 'pyml_jupyter:plugin';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'A sidebar listing registered models, with one-button deploy and test predictions.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const model = new PymlModel();
    const panel = new PymlPanel(model);
    app.shell.add(panel, 'left', { rank: 950 });
    if (restorer) {
      restorer.add(panel, 'pyml-panel');
    }
    model.startAutoRefresh();
    if (settingRegistry) {
      // registry, default resources and refresh interval, from JupyterLab's settings editor
      void settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const apply = () => model.setSettings(settings.composite as any);
          apply();
          settings.changed.connect(apply);
        })
        .catch(reason => console.warn('pyml: could not load the settings', reason));
    }

    /** The `ref` argument, or ask for one among the known versions. */
    async function refArg(args: any, title: string): Promise<string | null> {
      if (typeof args.ref === 'string' && args.ref) {
        return args.ref;
      }
      if (!model.loaded) {
        await model.refresh();
      }
      const result = await InputDialog.getItem({ title, items: model.refs() });
      return result.button.accept ? result.value : null;
    }

    app.commands.addCommand(CommandIDs.refresh, {
      label: 'pyml: Refresh Models',
      icon: pymlIcon,
      execute: () => model.refresh()
    });
    /** A command on one model version: asks for the ref (unless given), shows the panel, runs the action. */
    function addRefCommand(
      id: string,
      label: string,
      question: string,
      run: (ref: string, args: any) => Promise<unknown>,
      showPanel = true
    ): void {
      app.commands.addCommand(id, {
        label,
        execute: async args => {
          const ref = await refArg(args, question);
          if (ref) {
            if (showPanel) {
              app.shell.activateById(panel.id);
            }
            return run(ref, args);
          }
        }
      });
    }

    addRefCommand(CommandIDs.build, 'pyml: Build Model Image…', 'Build the image of which model version?', ref =>
      model.build(ref)
    );
    // The deploy command's arguments may carry the container's limits: {memory, pids_limit, workers, allowed_hosts, token}.
    addRefCommand(CommandIDs.deploy, 'pyml: Deploy Model…', 'Deploy which model version?', (ref, args) => {
      const { memory, pids_limit, workers, allowed_hosts, token } = args as IDeployOptions;
      return model.deploy(ref, { memory, pids_limit, workers, allowed_hosts, token });
    });
    addRefCommand(CommandIDs.test, 'pyml: Test Model on Every Target…', 'Test which model version?', ref =>
      model.test(ref)
    );
    addRefCommand(
      CommandIDs.promote,
      'pyml: Promote Model Version to champion…',
      'Promote which model version to champion?',
      (ref, args) => model.promote(ref, typeof args.alias === 'string' ? args.alias : 'champion')
    );
    addRefCommand(
      CommandIDs.push,
      'pyml: Push Model Image to the Registry…',
      'Push the image of which model version?',
      ref => model.push(ref)
    );
    addRefCommand(CommandIDs.stop, 'pyml: Stop Deployment…', 'Stop which deployment?', ref => model.stop(ref), false);

    if (palette) {
      for (const command of Object.values(CommandIDs)) {
        palette.addItem({ command, category: 'pyml' });
      }
    }
  }
};

export default plugin;
