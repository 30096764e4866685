import { loadConfig } from './config.ts';

describe('loadConfig', () => {
  it('has embedded defaults: PGlite in ./data, demo data, port 8080, reads audited', () => {
    const c = loadConfig({}, '/srv/tic');
    expect(c.port).toBe(8080);
    expect(c.databaseUrl).toBeUndefined();
    expect(c.dataDir).toBe('/srv/tic/data');
    expect(c.demoData).toBe(true);
    expect(c.publicUrl).toBe('http://localhost:8080');
    expect(c.auditReads).toBe(true);
  });
  it('turns demo data off by default on PostgreSQL', () => {
    expect(loadConfig({ DATABASE_URL: 'postgres://u@h/db' }).demoData).toBe(false);
  });
  it('rejects invalid values with a clear message', () => {
    expect(() => loadConfig({ PORT: 'eighty' })).toThrow(/PORT must be a number/);
    expect(() => loadConfig({ PORT: '70000' })).toThrow(/Invalid configuration: \/port/);
    expect(() => loadConfig({ DATABASE_URL: 'mysql://x' })).toThrow(/databaseUrl/);
    expect(() => loadConfig({ LOG_LEVEL: 'loud' })).toThrow(/logLevel/);
  });
  it('refuses to switch off read auditing in production', () => {
    expect(loadConfig({ AUDIT_READS: 'off' }).auditReads).toBe(false);
    expect(() => loadConfig({ AUDIT_READS: 'off', TIC_ENV: 'production' })).toThrow(/refused in production/);
  });
  it('audits reads in the local journal unless told to commit them to PostgreSQL', () => {
    expect(loadConfig({}).auditReadCommit).toBe('journal');
    expect(loadConfig({ AUDIT_READ_COMMIT: 'relaxed' }).auditReadCommit).toBe('relaxed');
    expect(loadConfig({ DATA_DIR: '/srv/d' }).auditJournalDir).toBe('/srv/d/audit-journal');
    expect(loadConfig({ AUDIT_JOURNAL_DIR: '/var/tic/j' }).auditJournalDir).toBe('/var/tic/j');
    expect(loadConfig({ AUDIT_READ_COMMIT: 'sync' }).auditReadCommit).toBe('sync');
    expect(() => loadConfig({ AUDIT_READ_COMMIT: 'later' })).toThrow(/auditReadCommit/);
  });
  it('limits the AuditEvent build while busy to a share of the time, up to a backlog bound', () => {
    expect(loadConfig({}).auditBuildShare).toBe(0.03);
    expect(loadConfig({}).auditBuildMaxBacklog).toBe(1_000_000);
    expect(loadConfig({ AUDIT_BUILD_SHARE: '0.1', AUDIT_BUILD_MAX_BACKLOG: '5000' })).toMatchObject({ auditBuildShare: 0.1, auditBuildMaxBacklog: 5000 });
    expect(loadConfig({ AUDIT_BUILD_SHARE: '1' }).auditBuildShare).toBe(1);
    expect(() => loadConfig({ AUDIT_BUILD_SHARE: '0' })).toThrow(/auditBuildShare/);
    expect(() => loadConfig({ AUDIT_BUILD_SHARE: '1.5' })).toThrow(/auditBuildShare/);
    expect(() => loadConfig({ AUDIT_BUILD_SHARE: 'some' })).toThrow(/AUDIT_BUILD_SHARE must be a number/);
    expect(() => loadConfig({ AUDIT_BUILD_MAX_BACKLOG: '2.5' })).toThrow(/auditBuildMaxBacklog/);
  });
});
