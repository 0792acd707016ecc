{{/*
ferry.yaml: the values' config block plus what the chart manages (where
things are mounted, the replay store, keys, TLS). Paths are relative to
the config file's directory.
*/}}
{{- define "ferry.brokerConfig" -}}
{{- $c := deepCopy .Values.config }}
{{- $_ := set $c "listen" (printf ":%d" (int .Values.containerPort)) }}
{{- if eq .Values.policies.source "gitSync" }}
{{- /* git-sync's link to the checkout, then the directory in the repository. */}}
{{- $path := trimAll "/" .Values.policies.gitSync.path }}
{{- $_ := set $c "policies" (trimSuffix "/" (printf "../git/current/%s" $path)) }}
{{- else }}
{{- $_ := set $c "policies" "../policies" }}
{{- end }}
{{- $redis := include "ferry.redisURL" . }}
{{- if $redis }}
{{- $replay := dict "store" "redis" "redis_url" $redis }}
{{- if .Values.redis.auth.enabled }}
{{- $_ := set $replay "redis_password_file" (printf "../keys/%s" .Values.secrets.keys.redisPassword) }}
{{- end }}
{{- $_ := set $c "replay" $replay }}
{{- else }}
{{- $_ := set $c "replay" (dict "store" "memory") }}
{{- end }}
{{- if .Values.token.enabled }}
{{- $token := dict "issuer" .Values.token.issuer "signing_key" (printf "../keys/%s" .Values.secrets.keys.signingKey) }}
{{- $prev := list }}
{{- range (include "ferry.previousKeyNames" . | fromJsonArray) }}
{{- $prev = append $prev (printf "../keys/%s" .) }}
{{- end }}
{{- if $prev }}
{{- $_ := set $token "previous_keys" $prev }}
{{- end }}
{{- $_ := set $c "token" $token }}
{{- end }}
{{- if .Values.tls.enabled }}
{{- $_ := set $c "tls" (dict "cert_file" (printf "../tls/%s" .Values.tls.certKey) "key_file" (printf "../tls/%s" .Values.tls.keyKey)) }}
{{- end }}
{{- if .Values.githubApp.enabled }}
{{- $app := dict "app_id" (int64 .Values.githubApp.appId) "private_key" (printf "../keys/%s" .Values.secrets.keys.githubAppKey) }}
{{- if .Values.githubApp.apiUrl }}
{{- $_ := set $app "api_url" .Values.githubApp.apiUrl }}
{{- end }}
{{- $_ := set $c "github_app" $app }}
{{- end }}
{{- toYaml $c }}
{{- end }}
