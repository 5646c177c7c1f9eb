// Imported first by an in-process test that talks to the HTTP edge as an agent: without the build's
// defines the server is version 0.0.0 and refuses every agent version (src/version.ts). This sets the
// define the build would (package.json's version), before src/version.ts is loaded.
import pkg from '../../package.json';

(globalThis as { __FLEET_VERSION__?: string }).__FLEET_VERSION__ = pkg.version;
