import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * An error answered by the pyml server extension: `{"error": code, "message": text}` with its HTTP status.
 */
export class PymlRequestError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
    readonly details?: unknown
  ) {
    super(message);
    this.name = 'PymlRequestError';
  }
}

/**
 * The one door from the panel to the server: call `/pyml/<endPoint>` and return its JSON body.
 *
 * @param endPoint path under `/pyml/`, e.g. `models` or `jobs/abc123`
 * @param init fetch options (method, body); the XSRF token and auth are added by ServerConnection
 * @returns the response body parsed as JSON
 * @throws PymlRequestError with the server's message when the status is not 2xx
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const requestUrl = URLExt.join(settings.baseUrl, 'pyml', endPoint);

  let response: Response;
  try {
    response = await ServerConnection.makeRequest(requestUrl, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }

  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch (error) {
      console.warn('pyml: not a JSON response body', response);
    }
  }

  if (!response.ok) {
    const message =
      (data && typeof data === 'object' && data.message) ||
      (typeof data === 'string' && data && !data.trimStart().startsWith('<') && data) ||
      `${response.status} ${response.statusText}`;
    const code = (data && typeof data === 'object' && data.error) || `http_${response.status}`;
    throw new PymlRequestError(message, response.status, code, data?.details);
  }
  return data as T;
}
