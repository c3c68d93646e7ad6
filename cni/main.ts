// Entry point of the weir-cni executable (bundled to CommonJS and embedded
// in a Node single executable by cni/build-plugin.mjs). Reads the conf from
// stdin, runs the command, prints only the result on stdout.
import { readFileSync, writeSync } from 'node:fs';
import { runPlugin } from '../src/cni/plugin.js';

function readStdin(): string {
  try {
    return readFileSync(0, 'utf8');
  } catch {
    // No readable stdin (closed fd, terminal): VERSION still works, the
    // other commands report the missing configuration.
    return '';
  }
}

// No top-level await: the SEA main is CommonJS.
void runPlugin(process.env, readStdin()).then((outcome) => {
  if (outcome.stdout) writeSync(1, outcome.stdout + '\n');
  process.exitCode = outcome.exitCode;
});
