import type { Command } from 'commander';

// Placeholder until the agent registers `weir status|pods|check|repair|logs`.
export function registerNodeCommands(_program: Command): void {}
