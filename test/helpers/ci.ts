/**
 * Whether this is a CI run: any value of CI a CI service sets (`true`, `1`, `yes`), not an empty
 * one, `0` or `false`. Under CI the services the suites need are mandatory: a missing one fails
 * the run instead of quietly dropping half of it.
 */
export const IN_CI = !['', '0', 'false'].includes((process.env.CI ?? '').trim().toLowerCase());
