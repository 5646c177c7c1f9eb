// The optional elastic-api-version request header and its echo.
import { FleetError } from '../fleet/errors';

export const DEFAULT_API_VERSION = '2023-06-01';
const SUPPORTED = [DEFAULT_API_VERSION];
const FORMAT = /^[0-9]{4}-[0-9]{2}-[0-9]{2}$/;

export function checkApiVersion(value: string | undefined): string {
  if (value === undefined || value === '') return DEFAULT_API_VERSION;
  if (!FORMAT.test(value)) {
    throw new FleetError('InvalidApiVersionFormat', `received "${value}", expected a valid date string formatted as YYYY-MM-DD. invalid version format`);
  }
  if (!SUPPORTED.includes(value)) {
    throw new FleetError('UnsupportedApiVersion', `received "${value}", is not supported. supported versions are: [${SUPPORTED.join(' ')}] version is not supported`);
  }
  return value;
}
