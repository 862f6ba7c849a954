// What the app offers each role. The server decides what is allowed (roles.json); the app only avoids
// offering what it would refuse: receptionists and billing staff see no clinical content at all.
const CLINICAL_ROLES = ['admin', 'physician', 'nurse'];

export function seesClinicalRecord(roles: readonly string[]): boolean {
  return roles.some((role) => CLINICAL_ROLES.includes(role));
}

export function isAdmin(roles: readonly string[]): boolean {
  return roles.includes('admin');
}
