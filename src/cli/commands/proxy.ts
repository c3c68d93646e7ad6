import type { Command } from 'commander';

// Placeholder until the proxy registers `weir proxy`.
export function registerProxyCommand(_program: Command): void {}
