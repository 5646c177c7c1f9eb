// Replaced at bundle time by scripts/build.mjs; the fallbacks serve ts-only runs (tests' type check).
declare const __FLEET_VERSION__: string;
declare const __FLEET_COMMIT__: string;
declare const __FLEET_BUILD_TIME__: string;
declare const __FLEET_NODE_FLAGS__: string[];
declare const __FLEET_START_ENV__: Record<string, string>;

export const VERSION: string = typeof __FLEET_VERSION__ === 'string' ? __FLEET_VERSION__ : '0.0.0';
export const COMMIT: string = typeof __FLEET_COMMIT__ === 'string' ? __FLEET_COMMIT__ : 'unknown';
export const BUILD_TIME: string = typeof __FLEET_BUILD_TIME__ === 'string' ? __FLEET_BUILD_TIME__ : '1970-01-01T00:00:00Z';
/** The V8 flags the program ships with (package.json fleetServer.nodeFlags); cluster workers are started with them. */
export const NODE_FLAGS: string[] = typeof __FLEET_NODE_FLAGS__ === 'object' ? __FLEET_NODE_FLAGS__ : [];
/**
 * The environment the program ships to start in (package.json fleetServer.env): the C library's
 * allocator settings, which it reads once, when a process starts (runtime/node-flags.ts).
 */
export const START_ENV: Readonly<Record<string, string>> = typeof __FLEET_START_ENV__ === 'object' ? __FLEET_START_ENV__ : {};
