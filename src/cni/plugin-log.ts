// The plugin's logger: JSON lines on stderr (runtimes capture it), and
// warnings/errors also forwarded to the agent so they show up in the agent's
// log next to the pod's name. Never stdout: that is the CNI result channel.
import { writeSync } from 'node:fs';
import type { CniLogLine } from './agent-protocol.js';
import { callAgent } from './agent-client.js';
import type { LogLevel } from './conf.js';

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface PluginLogContext { containerId?: string; podNamespace?: string; podName?: string }

export class PluginLog {
  private level: LogLevel = 'info';
  private context: PluginLogContext = {};
  private agentSocket?: string;
  private readonly pending: Promise<unknown>[] = [];

  /**
   * With a sink (the agent running the plugin logic for the C relay), lines
   * go straight to the agent's log instead of stderr and the socket.
   */
  constructor(private readonly sink?: (line: CniLogLine) => void) {}

  configure(level: LogLevel, agentSocket: string | undefined, context: PluginLogContext): void {
    this.level = level;
    this.agentSocket = agentSocket;
    this.context = context;
  }

  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    if (ORDER[level] < ORDER[this.level]) return;
    if (this.sink) { this.sink({ level, msg, ...this.context, fields }); return; }
    const line = { time: new Date().toISOString(), level, plugin: 'weir-cni', msg, ...this.context, ...fields };
    try { writeSync(2, JSON.stringify(line) + '\n'); } catch { /* stderr closed: nothing else to do */ }
    if (this.agentSocket && ORDER[level] >= ORDER.warn) {
      const body: CniLogLine = { level, msg, ...this.context, fields };
      // Best effort with a short bound: the agent may be the thing that is down.
      this.pending.push(callAgent({ socketPath: this.agentSocket, timeoutMs: 300 }, '/log', body).catch(() => undefined));
    }
  }

  /** Wait (bounded) for forwarded lines before the process exits. */
  async flush(): Promise<void> {
    await Promise.all(this.pending.splice(0));
  }
}
