import type { EtcdMember } from './etcd.server';

/** One member's answer to `/v3/maintenance/status`: its id and the leader it knows. */
export interface EtcdMemberStatus {
  readonly id: string;
  readonly leader: string;
}

/**
 * `/v3/maintenance/status` of one member (etcd's JSON gateway, ids as decimal strings), or
 * undefined when it does not answer within 1 s or knows no leader (an election in progress).
 */
export async function memberStatus(member: EtcdMember): Promise<EtcdMemberStatus | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${member.clientPort}/v3/maintenance/status`, {
      method: 'POST',
      body: '{}',
      signal: AbortSignal.timeout(1_000),
    });
    if (!response.ok) return undefined;
    const body = (await response.json()) as { header?: { member_id?: string }; leader?: string };
    const id = body.header?.member_id;
    return id && body.leader && body.leader !== '0' ? { id, leader: body.leader } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Index in `members` of the leader the members agree on now, or undefined. `every`: every
 * member must answer (a member just restarted or thawed has rejoined); otherwise a majority
 * that answers is enough (the leader's own member may be down). A leader at index `not` does
 * not count (waiting for a new one).
 */
export async function agreedLeader(
  members: readonly EtcdMember[],
  options: { every: boolean; not?: number },
): Promise<number | undefined> {
  const statuses = await Promise.all(members.map(memberStatus));
  const answered = statuses.filter((s) => s !== undefined);
  const needed = options.every ? members.length : Math.floor(members.length / 2) + 1;
  if (answered.length < needed || answered.some((s) => s.leader !== answered[0].leader)) {
    return undefined;
  }
  const i = statuses.findIndex((s) => s?.id === answered[0].leader);
  return i >= 0 && i !== options.not ? i : undefined;
}
