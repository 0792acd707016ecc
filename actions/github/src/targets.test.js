import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkEntries, entriesFromInputs, parseList, prefixed } from './targets.js';

test('parseList reads one credential a line, with comments and blank lines', () => {
  const got = parseList(`
    deploy-prod  aws-profile=prod   # production
    deploy-stage aws-profile=stage duration=20m

    ci-artifacts env-prefix=ARTIFACTS_
    gcp-deploy
  `);
  assert.deepEqual(got.map(e => [e.policy, e.awsProfile, e.envPrefix, e.duration, e.line]), [
    ['deploy-prod', 'prod', '', '', 2],
    ['deploy-stage', 'stage', '', '20m', 3],
    ['ci-artifacts', '', 'ARTIFACTS_', '', 5],
    ['gcp-deploy', '', '', '', 6],
  ]);
});

test('parseList refuses what it cannot read, naming the line', () => {
  const bad = {
    'deploy prod=1': /line 1: unknown option "prod"/,
    'deploy aws-profile': /line 1: aws-profile needs a value/,
    'deploy aws-profile=': /aws-profile needs a value/,
    'deploy aws-profile=a aws-profile=b': /aws-profile is given twice/,
    '\n"deploy"': /line 2: "\\"deploy\\"" is not a policy name/,
    '# only a comment\n': /names no policy/,
  };
  for (const [text, want] of Object.entries(bad)) assert.throws(() => parseList(text), want, text);
});

test('two credentials into the same variables are refused', () => {
  const cases = {
    'a\nb': /policies "a" and "b" would all export into the same variables/,
    'a aws-profile=p\nb aws-profile=p': /aws-profile "p" appears twice \(policies line 1 and policies line 2\)/,
    'a env-prefix=X_\nb env-prefix=X_': /env-prefix "X_" appears twice/,
    'a\na aws-profile=p': /policy "a" appears twice/,
    'a aws-profile=p env-prefix=X_': /aws-profile or env-prefix, not both/,
    'a env-prefix=X': /must be a variable name ending in _/,
    'a env-prefix=1X_': /must be a variable name ending in _/,
    'a aws-profile=my]profile': /aws-profile "my\]profile" must be/,
    'a duration=forever': /not a duration/,
  };
  for (const [text, want] of Object.entries(cases)) assert.throws(() => checkEntries(parseList(text)), want, text);
  // One default and any number of named destinations is fine.
  assert.equal(checkEntries(parseList('a\nb aws-profile=b\nc env-prefix=C_\nd aws-profile=d')).length, 4);
});

test('entriesFromInputs takes policy or policies, and aws-profile only with policy', () => {
  assert.deepEqual(entriesFromInputs({ policy: 'p', awsProfile: 'x', duration: '20m' }).map(e => [e.policy, e.awsProfile, e.duration]), [['p', 'x', '20m']]);
  assert.throws(() => entriesFromInputs({ policy: 'p', policies: 'q' }), /not both/);
  assert.throws(() => entriesFromInputs({}), /Input required and not supplied: policy/);
  assert.throws(() => entriesFromInputs({ policies: 'q', awsProfile: 'x' }), /give each line its own aws-profile/);
  // The step's duration is each line's default.
  const l = entriesFromInputs({ policies: 'a aws-profile=a duration=30m\nb', duration: '20m' });
  assert.deepEqual(l.map(e => e.duration), ['30m', '20m']);
});

test('prefixed renames variables for an env-prefix', () => {
  assert.deepEqual(prefixed([['FERRY_TOKEN', 'x']], 'ART_'), [['ART_FERRY_TOKEN', 'x']]);
  assert.deepEqual(prefixed([['FERRY_TOKEN', 'x']], ''), [['FERRY_TOKEN', 'x']]);
});
