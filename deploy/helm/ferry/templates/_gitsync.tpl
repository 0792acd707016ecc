{{/*
A git-sync container: "git-sync-init" checks out once before the broker
starts, "git-sync" keeps the checkout current. The broker reads
{{ ferry.gitDir }}/current, a symlink git-sync swaps to each new commit.
*/}}
{{- define "ferry.gitSyncContainer" -}}
{{- $v := .root.Values.policies.gitSync -}}
- name: {{ .name }}
  image: "{{ $v.image.repository }}:{{ $v.image.tag }}"
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
    - --repo={{ $v.repo }}
    - --ref={{ $v.ref }}
    - --root=/git
    - --link=current
    - --depth=1
    {{- if .oneTime }}
    - --one-time
    {{- else }}
    - --period={{ $v.period }}
    {{- end }}
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    - name: HOME
      value: /tmp
    {{- with $v.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  securityContext:
    {{- toYaml .root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: git
      mountPath: /git
    - name: git-tmp
      mountPath: /tmp
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
