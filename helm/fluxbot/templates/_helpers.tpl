{{- define "fluxbot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fluxbot.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "fluxbot.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "fluxbot.labels" -}}
{{ include "fluxbot.selector" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fluxbot.selector" -}}
app.kubernetes.io/name: {{ include "fluxbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fluxbot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "fluxbot.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{- define "fluxbot.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* fluxbot.yaml: the values' config, with the state dir on the volume and each remote cluster's
kubeconfig (and context) where the Secret is mounted. */}}
{{- define "fluxbot.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $clusters := deepCopy (get $config "clusters" | default dict) -}}
{{- range $name, $remote := .Values.remoteClusters -}}
{{- $cluster := deepCopy (get $clusters $name | default dict) -}}
{{- $_ := set $cluster "kubeconfig" (printf "/etc/fluxbot/clusters/%s/kubeconfig" $name) -}}
{{- if $remote.context -}}{{- $_ := set $cluster "context" $remote.context -}}{{- end -}}
{{- $_ := set $clusters $name $cluster -}}
{{- end -}}
{{- if $clusters -}}{{- $_ := set $config "clusters" $clusters -}}{{- end -}}
{{- $_ := set $config "state_dir" "/var/lib/fluxbot" -}}
{{- if eq .Values.store.type "postgresql" -}}
{{- $_ := set $config "store" (dict "url_env" "FLUXBOT_STORE_URL" "password_env" "FLUXBOT_STORE_PASSWORD") -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* The secret variables fluxbot reads, each from its mapped key in existingSecret. A required
one with no key fails the render; its key missing from the Secret fails the pod's start
(CreateContainerConfigError names the key), because only optional ones are `optional: true`. */}}
{{- define "fluxbot.secretEnv" -}}
{{- $github := eq (dig "forge" "type" "local" .Values.config) "github" -}}
{{- $app := dig "forge" "app_id" "" .Values.config -}}
{{- $socket := eq .Values.slackMode "socket" -}}
{{- $postgresql := eq .Values.store.type "postgresql" -}}
{{- $wanted := list
  (dict "var" "SLACK_BOT_TOKEN" "env" "SLACK_BOT_TOKEN" "use" true "required" true)
  (dict "var" "SLACK_SIGNING_SECRET" "env" "SLACK_SIGNING_SECRET" "use" true "required" true)
  (dict "var" "SLACK_APP_TOKEN" "env" "SLACK_APP_TOKEN" "use" $socket "required" $socket)
  (dict "var" "GITHUB_TOKEN" "env" (dig "forge" "token_env" "GITHUB_TOKEN" .Values.config) "use" (and $github (not $app)) "required" (and $github (not $app)))
  (dict "var" "GITHUB_WEBHOOK_SECRET" "env" "GITHUB_WEBHOOK_SECRET" "use" $github "required" false)
  (dict "var" "FLUXBOT_STORE_URL" "env" "FLUXBOT_STORE_URL" "use" $postgresql "required" $postgresql)
  (dict "var" "FLUXBOT_STORE_PASSWORD" "env" "FLUXBOT_STORE_PASSWORD" "use" $postgresql "required" $postgresql) -}}
{{- range $wanted }}
{{- $key := index $.Values.secretKeys .var | default "" }}
{{- if and .required (not $key) }}
{{- fail (printf "secretKeys.%s is empty, but fluxbot needs %s here: name the key of Secret %q that holds it" .var .env $.Values.existingSecret) }}
{{- end }}
{{- if and .use $key }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.existingSecret }}
      key: {{ $key }}
      {{- if not .required }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- end -}}


{{/* Several replicas share state only through PostgreSQL: refuse the render otherwise. */}}
{{- define "fluxbot.replicas" -}}
{{- if and (gt (int .Values.replicaCount) 1) (ne .Values.store.type "postgresql") -}}
{{- fail (printf "replicaCount is %d, but store.type is %s: several replicas need store.type postgresql (SQLite is one pod's file)" (int .Values.replicaCount) .Values.store.type) -}}
{{- end -}}
{{- .Values.replicaCount -}}
{{- end -}}
