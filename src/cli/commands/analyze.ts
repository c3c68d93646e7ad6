// `weir analyze -f FILE...`: validate Istio resources offline, with the
// agent's own readers. Exit 0 when clean, 2 with one line per problem.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { parseAllDocuments } from 'yaml';
import { analyze, formatFinding, type AnalyzeInput, type Finding } from '../../istio/analyze.js';

function load(files: string[]): { inputs: AnalyzeInput[]; findings: Finding[] } {
  const inputs: AnalyzeInput[] = [];
  const findings: Finding[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file === '-' ? 0 : file, 'utf8');
    } catch (e) {
      findings.push({ file, resource: '', field: '', severity: 'error', message: `cannot read: ${(e as Error).message}` });
      continue;
    }
    parseAllDocuments(text).forEach((d, i) => {
      if (d.errors.length) findings.push({ file, resource: `document ${i + 1}`, field: '', severity: 'error', message: `YAML: ${d.errors[0].message.split('\n')[0]}` });
      else { const doc = d.toJS(); if (doc !== null) inputs.push({ file: file === '-' ? '<stdin>' : file, doc }); }
    });
  }
  return { inputs, findings };
}

export function registerAnalyzeCommand(program: Command): void {
  program
    .command('analyze')
    .description('validate Istio resources (VirtualService, DestinationRule, ServiceEntry, Sidecar, PeerAuthentication, AuthorizationPolicy) the way weir reads them; Services among the files are the registry')
    .requiredOption('-f, --filename <files...>', 'YAML files (multi-document), - for stdin')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .action((o: { filename: string[]; output: string }) => {
      const { inputs, findings } = load(o.filename);
      findings.push(...analyze(inputs));
      const problems = findings.filter((f) => f.severity !== 'info');
      if (o.output === 'json') process.stdout.write(JSON.stringify(findings, null, 2) + '\n');
      else if (findings.length === 0) process.stdout.write('✔ no problems found\n');
      else for (const f of findings) process.stdout.write(formatFinding(f) + '\n');
      process.exitCode = problems.length ? 2 : 0;
    });
}
