// Access groups may name other groups (`{ group: { id } }` inside a group). Evaluation follows
// them recursively, so the graph must be finite: no cycles and no chain longer than
// MAX_GROUP_DEPTH, which bounds the work of one evaluation.
import { MAX_GROUP_DEPTH } from './limits.ts';
import type { PolicyProblem } from './problems.ts';
import { SECTIONS } from './rules.ts';
import type { GroupDefinition } from './types.ts';

/** Cycles and over-deep nesting among `groups`. Paths are `/groups/<id>/…`. */
export function groupGraphProblems(groups: ReadonlyMap<string, GroupDefinition>): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  // Depth of each finished group: 1 for a group naming no group. `null` while on the DFS stack.
  const depths = new Map<string, number | null>();
  const stack: GroupDefinition[] = [];

  const visit = (group: GroupDefinition): number => {
    const known = depths.get(group.id);
    if (known !== undefined) return known ?? 0;
    depths.set(group.id, null);
    stack.push(group);
    let deepest = 0;
    for (const section of SECTIONS) {
      const rules = group[section] ?? [];
      for (let index = 0; index < rules.length; index++) {
        const rule = rules[index]!;
        if (!('group' in rule)) continue;
        const target = groups.get(rule.group.id);
        if (target === undefined) continue; // referenceProblems reports unknown groups
        if (depths.get(target.id) === null) {
          const cycle = [...stack.slice(stack.indexOf(target)), target].map((g) => `"${g.name}"`);
          problems.push({
            path: `/groups/${group.id}/${section}/${index}`,
            message: `groups form a cycle: ${cycle.join(' > ')}`,
          });
        } else {
          deepest = Math.max(deepest, visit(target));
        }
      }
    }
    stack.pop();
    const depth = deepest + 1;
    depths.set(group.id, depth);
    if (depth > MAX_GROUP_DEPTH && deepest <= MAX_GROUP_DEPTH) {
      problems.push({
        path: `/groups/${group.id}`,
        message: `group "${group.name}" nests groups ${depth} deep; at most ${MAX_GROUP_DEPTH} are allowed`,
      });
    }
    return depth;
  };

  for (const group of groups.values()) visit(group);
  return problems;
}
