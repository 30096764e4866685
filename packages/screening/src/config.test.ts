import { configuredCutoff, protocolsFor, settingsFor, validateScreeningConfig } from './config.ts';
import type { ScreeningConfig } from './config.ts';
import { instrument } from './fixtures.ts';

const config: ScreeningConfig = {
  defaults: { cutoffs: { 'pc-ptsd-5': 3 }, protocols: [{ questionnaire: '*', task: { dueWithinHours: 72 } }] },
  organisations: {
    'Organization/clinic-a': {
      cutoffs: { 'https://tic-exchange.org/fhir/Questionnaire/pc-ptsd-5': 4, 'pcl-5#total': 31 },
      protocols: [{ questionnaire: 'pc-ptsd-5', on: ['positive'], task: { owner: 'CareTeam/ct1', dueWithinHours: 24, priority: 'urgent' }, condition: {} }],
    },
  },
};

describe('ScreeningConfig', () => {
  it('accepts a well-formed config and rejects bad ones with every problem listed', () => {
    expect(validateScreeningConfig(config)).toBe(config);
    expect(() => validateScreeningConfig({ organisations: { 'clinic-a': {} } })).toThrow(/organisations must match pattern/);
    expect(() => validateScreeningConfig({ defaults: { protocols: [{ questionnaire: 'x', task: { dueWithinHours: 0 } }] } })).toThrow(/dueWithinHours/);
    expect(() => validateScreeningConfig({ defaults: { cutoffs: { x: 'three' } }, extra: 1 })).toThrow(/additional properties \(extra\)[\s\S]*cutoffs\/x must be number/);
  });

  it('picks the organisation settings over the defaults, field by field', () => {
    const a = settingsFor(config, 'Organization/clinic-a');
    expect(configuredCutoff(a, instrument('pc-ptsd-5'), { linkId: 'score', type: 'integer' })).toBe(4);
    expect(configuredCutoff(a, instrument('pcl-5'), { linkId: 'total', type: 'integer' })).toBe(31);
    expect(configuredCutoff(a, instrument('phq-9'), { linkId: 'total', type: 'integer' })).toBeUndefined();
    expect(protocolsFor(a, instrument('phq-9'))).toEqual([]);
    const other = settingsFor(config, 'Organization/other');
    expect(configuredCutoff(other, instrument('pc-ptsd-5'), { linkId: 'score', type: 'integer' })).toBe(3);
    expect(protocolsFor(other, instrument('phq-9'))).toHaveLength(1);
  });
});
