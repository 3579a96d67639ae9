package manifest

import "slices"

// Parameter describes one parameter a kind of run reads.
type Parameter struct {
	Name        string // kebab-case, as in the WorkflowTemplate
	Description string
	Default     string   // applies when the value is empty or missing
	Enum        []string // the allowed values; nil when any value of the right form is
	Required    bool
}

// CommonParameters are the parameters every run may carry besides its kind's: the run itself
// uses them, so Parse neither reads nor rejects them.
// AutoDeploy is the app-service parameter by which an app opts in to CI → CD.
const AutoDeploy = "auto-deploy"

var CommonParameters = map[string]bool{"kind": true, "timeout": true}

// Parameters lists the parameters a kind of run reads, in the order of a form; nil for an
// unknown kind.
func Parameters(kind Kind) []Parameter {
	ps := slices.Clone(parameters[kind])
	for i := range ps {
		ps[i].Enum = slices.Clone(ps[i].Enum)
	}
	return ps
}

var (
	imageParameter = Parameter{Name: "image", Required: true,
		Description: "Container image: [registry[:port]/]path[:tag][@digest], e.g. registry.example/shop:1.2.3."}
	argsParameter = Parameter{Name: "args",
		Description: `Container arguments: a JSON array of at most 64 strings, e.g. ["--dry-run"].`}
	resourceParameters = []Parameter{
		{Name: "cpu-request", Description: "CPU request, e.g. 250m."},
		{Name: "memory-request", Description: "Memory request, e.g. 256Mi."},
		{Name: "cpu-limit", Description: "CPU limit, at least the request, e.g. 1."},
		{Name: "memory-limit", Description: "Memory limit, at least the request, e.g. 512Mi."},
	}
	workloadNameParameter = Parameter{Name: "name", Required: true,
		Description: "Name: a DNS-1123 label of at most 52 characters."}
)

var parameters = map[Kind][]Parameter{
	KindProject: {
		{Name: "admins", Description: "Administrators: comma-separated user:<name> or group:<name>, at most 50."},
		{Name: "editors", Description: "Editors: comma-separated user:<name> or group:<name>, at most 50."},
		{Name: "viewers", Description: "Viewers: comma-separated user:<name> or group:<name>, at most 50."},
	},
	KindAppService: slices.Concat(
		[]Parameter{
			imageParameter,
			{Name: "port", Default: "8080", Description: "Port the container listens on, 1 to 65535."},
			{Name: "replicas", Default: "1", Description: "Replicas, 0 to 50; ignored when hpa-max is set."},
		},
		resourceParameters,
		[]Parameter{
			{Name: "ingress-host", Description: "Host name of an Ingress to the service; none when empty."},
			{Name: "ingress-path", Default: "/", Description: "Path prefix of the Ingress."},
			{Name: "hpa-min", Default: "1", Description: "Autoscaling: least replicas, 1 to hpa-max."},
			{Name: "hpa-max", Description: "Autoscaling: most replicas, up to 50; no autoscaling when empty. Needs cpu-request."},
			{Name: "hpa-cpu-target", Default: "80", Description: "Autoscaling: target CPU use, percent of the request, 1 to 100."},
			{Name: AutoDeploy, Default: "false", Enum: []string{"true", "false"},
				Description: "Deploy every image a successful CI run of the app (dwp-ci) pushes, with these settings."},
		},
	),
	KindHelm: {
		{Name: "chart", Required: true, Description: "Chart name, e.g. redis."},
		{Name: "repo", Required: true, Description: "Chart repository: an https, http or oci URL."},
		{Name: "version", Required: true, Description: "Exact chart version, e.g. 1.2.3; a new one upgrades the release."},
		{Name: "release", Description: "Release name, a DNS-1123 label of at most 53 characters; the app's name when empty."},
		{Name: "values", Description: "Values of the release: a YAML or JSON object, at most 64 KiB."},
	},
	KindJob: slices.Concat(
		[]Parameter{workloadNameParameter, imageParameter, argsParameter},
		resourceParameters,
		[]Parameter{
			{Name: "backoff-limit", Default: "0", Description: "Retries before the job fails, 0 to 10."},
			{Name: "active-deadline-seconds", Description: "Time limit of the job in seconds, 1 to 86400; none when empty."},
		},
	),
	KindCronJob: slices.Concat(
		[]Parameter{workloadNameParameter, imageParameter, argsParameter},
		resourceParameters,
		[]Parameter{
			{Name: "schedule", Required: true, Description: `Cron schedule, e.g. "0 3 * * *" or @hourly.`},
			{Name: "time-zone", Description: "Time zone of the schedule, e.g. Europe/London; the controller's when empty."},
			{Name: "suspend", Default: "false", Enum: []string{"true", "false"}, Description: "Suspend the schedule."},
			{Name: "concurrency-policy", Default: "Forbid", Enum: []string{"Allow", "Forbid", "Replace"},
				Description: "What to do when a run is due while the previous one still runs."},
		},
	),
	KindVolume: {
		{Name: "name", Required: true, Description: "Name: a DNS-1123 label."},
		{Name: "size", Required: true, Description: "Size, up to 16Ti, e.g. 10Gi."},
		{Name: "access-mode", Default: "ReadWriteOnce",
			Enum:        []string{"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"},
			Description: "Access mode."},
		{Name: "storage-class", Description: "Storage class; the cluster's default when empty."},
	},
}
