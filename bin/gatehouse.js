#!/usr/bin/env node
// The package's `bin`: runs the TypeScript sources through tsx so `npx gatehouse` works
// right after `npm ci`, with no build step and no stale output to go out of date.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
await main(process.argv);
