import type { Command } from 'commander';

// Placeholder until the agent registers `weir agent`.
export function registerAgentCommand(_program: Command): void {}
