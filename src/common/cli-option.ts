// Command-line option helpers shared by the CLI and the proxy's own command.
import { Option } from 'commander';

/**
 * An option whose default is applied later (by the command's config
 * resolver, after the environment), shown in --help all the same: commander
 * prints "default:" only for defaults it applies itself.
 */
export function optionWithDefault(flags: string, description: string, shownDefault: string): Option {
  return new Option(flags, `${description} (default: ${shownDefault})`);
}
