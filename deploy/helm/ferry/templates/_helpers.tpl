{{/* Names and labels. */}}
{{- define "ferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ferry.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ferry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The brokers' pods, apart from the chart's Redis. */}}
{{- define "ferry.brokerSelectorLabels" -}}
{{ include "ferry.selectorLabels" . }}
app.kubernetes.io/component: broker
{{- end }}

{{- define "ferry.labels" -}}
helm.sh/chart: {{ include "ferry.chart" . }}
{{ include "ferry.selectorLabels" . }}
app.kubernetes.io/version: {{ include "ferry.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ferry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ferry.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "ferry.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "ferry.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Where things are in the pod. ferry.yaml names the other files relative to
its own directory, which Ferry resolves as kubeconfig does.
*/}}
{{- define "ferry.configDir" -}}/etc/ferry/config{{- end }}
{{- define "ferry.configPath" -}}{{ include "ferry.configDir" . }}/ferry.yaml{{- end }}
{{- define "ferry.keysDir" -}}/etc/ferry/keys{{- end }}
{{- define "ferry.tlsDir" -}}/etc/ferry/tls{{- end }}
{{- define "ferry.policiesDir" -}}/etc/ferry/policies{{- end }}
{{- define "ferry.gitDir" -}}/etc/ferry/git{{- end }}

{{/* The port's name: the probes, the Service and the ServiceMonitor use it. */}}
{{- define "ferry.portName" -}}
{{- if .Values.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* The name of the Secret holding keys and passwords. */}}
{{- define "ferry.secretName" -}}
{{- default (include "ferry.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* "true" when the pod needs anything from that Secret. */}}
{{- define "ferry.needsSecret" -}}
{{- if or .Values.token.enabled .Values.githubApp.enabled .Values.redis.auth.enabled }}true{{ end }}
{{- end }}

{{- define "ferry.previousKeyNames" -}}
{{- if .Values.secrets.existingSecret }}
{{- toJson .Values.secrets.keys.previousSigningKeys }}
{{- else }}
{{- $names := list }}
{{- range $i, $_ := .Values.token.previousKeys }}
{{- $names = append $names (printf "previous-signing-key-%d.pem" $i) }}
{{- end }}
{{- toJson $names }}
{{- end }}
{{- end }}

{{/* The Redis URL the broker uses ("" for the memory store). */}}
{{- define "ferry.redisURL" -}}
{{- if .Values.redis.url }}
{{- .Values.redis.url }}
{{- else if .Values.redis.internal.enabled }}
{{- printf "redis://%s-redis:6379/0" (include "ferry.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Checks that values alone cannot express in the schema. Each failure says
what to change.
*/}}
{{- define "ferry.validate" -}}
{{- $replicas := int .Values.replicaCount }}
{{- if .Values.autoscaling.enabled }}{{ $replicas = int .Values.autoscaling.maxReplicas }}{{ end }}
{{- if and .Values.redis.url .Values.redis.internal.enabled }}
{{- fail "redis: set redis.url for your own Redis or redis.internal.enabled for the chart's, not both" }}
{{- end }}
{{- if and (gt $replicas 1) (not (include "ferry.redisURL" .)) }}
{{- fail "redis: more than one Ferry replica needs a shared Redis (a token id is single-use across all of them): set redis.url, or redis.internal.enabled for a trial, or replicaCount: 1" }}
{{- end }}
{{- if regexMatch "^[a-z]+://[^/@]*:[^/@]*@" .Values.redis.url }}
{{- fail "redis.url holds a password, and the URL lands in a ConfigMap: put the password in redis.auth.password or in secrets.existingSecret (redis.auth.enabled: true)" }}
{{- end }}
{{- range $key := list "listen" "policies" "replay" "token" "tls" "github_app" }}
{{- if hasKey $.Values.config $key }}
{{- fail (printf "config.%s is set by the chart: use the chart's own values for it (see the chart's README)" $key) }}
{{- end }}
{{- end }}
{{- if and .Values.token.enabled (not .Values.token.issuer) }}
{{- fail "token.issuer is required when token.enabled is true (the iss of Ferry-signed tokens, e.g. https://ferry.example.com)" }}
{{- end }}
{{- if not .Values.secrets.existingSecret }}
{{- if and .Values.token.enabled (not .Values.token.signingKey) }}
{{- fail "token.signingKey is required when token.enabled is true: helm install --set-file token.signingKey=ferry-signing.pem (from `ferry keygen`), or use secrets.existingSecret" }}
{{- end }}
{{- if and .Values.githubApp.enabled (not .Values.githubApp.privateKey) }}
{{- fail "githubApp.privateKey is required when githubApp.enabled is true: --set-file githubApp.privateKey=app.pem, or use secrets.existingSecret" }}
{{- end }}
{{- if and .Values.redis.auth.enabled (not .Values.redis.auth.password) }}
{{- fail "redis.auth.password is required when redis.auth.enabled is true, or use secrets.existingSecret" }}
{{- end }}
{{- end }}
{{- if and .Values.redis.auth.enabled (not (include "ferry.redisURL" .)) }}
{{- fail "redis.auth.enabled needs a Redis: set redis.url or redis.internal.enabled" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) }}
{{- fail "tls.existingSecret is required when tls.enabled is true: a kubernetes.io/tls Secret, e.g. one cert-manager keeps renewed" }}
{{- end }}
{{- if and .Values.githubApp.enabled (not .Values.githubApp.appId) }}
{{- fail "githubApp.appId is required when githubApp.enabled is true" }}
{{- end }}
{{- $src := .Values.policies.source }}
{{- if and (eq $src "configMap") (not .Values.policies.existingConfigMap) }}
{{- fail "policies.existingConfigMap is required when policies.source is configMap" }}
{{- end }}
{{- if and (eq $src "gitSync") (not .Values.policies.gitSync.repo) }}
{{- fail "policies.gitSync.repo is required when policies.source is gitSync" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.minReplicas) 2) }}
{{- fail "autoscaling.minReplicas must be at least 2, so a rollout or a node drain leaves one broker serving" }}
{{- end }}
{{- end }}
