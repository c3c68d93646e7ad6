import type { Command } from 'commander';

// Placeholder until the capture core registers `weir rules ...`.
export function registerRulesCommands(_program: Command): void {}
