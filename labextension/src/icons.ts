import { LabIcon } from '@jupyterlab/ui-components';

import pymlSvg from '../style/icons/pyml.svg';

/** The sidebar tab's icon: a model package (follows the theme through the `jp-icon3` class). */
export const pymlIcon = new LabIcon({ name: 'pyml_jupyter:models', svgstr: pymlSvg });
