package manifest

import (
	"fmt"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Bounds of a job's parameters.
const (
	// maxJobNameLen leaves room for the suffixes the controllers append: a CronJob's Jobs
	// are named <name>-<11 characters>, and the API server holds CronJobs to it; Jobs
	// share it so that a job can become a cronjob.
	maxJobNameLen      = 52
	maxBackoffLimit    = 10
	maxDeadlineSeconds = 86400
)

// replaceSyncOptions make Argo CD delete and recreate a Job whose spec changed: a Job's pod
// template is immutable, so an update would fail.
const (
	syncOptionsAnnotation = "argocd.argoproj.io/sync-options"
	replaceSyncOptions    = "Replace=true,Force=true"
)

// container is what jobs and cronjobs run.
type container struct {
	image     string
	args      []string
	resources corev1.ResourceRequirements
}

func readContainer(r *reader) container {
	return container{image: r.image("image"), args: r.args("args"), resources: r.resources()}
}

// podTemplate runs c once, with the labels of t.
func (c container) podTemplate(t Target) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: t.labels()},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name:      containerName,
				Image:     c.image,
				Args:      c.args,
				Resources: c.resources,
			}},
		},
	}
}

type job struct {
	target   Target
	name     string
	c        container
	backoff  int32
	deadline *int64
}

func parseJob(t Target, r *reader) *job {
	j := &job{target: t, name: r.dnsLabel("name", maxJobNameLen), c: readContainer(r)}
	backoff, _ := r.int("backoff-limit", 0, maxBackoffLimit)
	j.backoff = int32(backoff)
	if d, ok := r.int("active-deadline-seconds", 1, maxDeadlineSeconds); ok {
		d64 := int64(d)
		j.deadline = &d64
	}
	return j
}

func (j *job) file() string { return "job-" + j.name + ".yaml" }

func (j *job) Kind() Kind { return KindJob }

func (j *job) Owns(file string) bool { return file == j.file() }

func (j *job) Summary() string {
	return fmt.Sprintf("job %s: image %s, backoff limit %d", j.name, j.c.image, j.backoff)
}

func (j *job) Files() (map[string][]byte, error) {
	t := j.target
	obj := &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        j.name,
			Namespace:   t.Namespace,
			Labels:      t.labels(),
			Annotations: map[string]string{syncOptionsAnnotation: replaceSyncOptions},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:          &j.backoff,
			ActiveDeadlineSeconds: j.deadline,
			Template:              j.c.podTemplate(t),
		},
	}
	b, err := encode(obj)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{j.file(): b}, nil
}

type cronJob struct {
	target            Target
	name              string
	c                 container
	schedule          string
	timeZone          *string
	suspend           bool
	concurrencyPolicy batchv1.ConcurrencyPolicy
}

func parseCronJob(t Target, r *reader) *cronJob {
	cj := &cronJob{
		target:            t,
		name:              r.dnsLabel("name", maxJobNameLen),
		c:                 readContainer(r),
		suspend:           r.get("suspend") == "true",
		concurrencyPolicy: batchv1.ConcurrencyPolicy(r.get("concurrency-policy")),
	}
	if tz := r.get("time-zone"); tz != "" {
		if detail := checkTimeZone(tz); detail != "" {
			r.fail("time-zone", detail)
		} else {
			cj.timeZone = &tz
		}
	}
	if s := r.get("schedule"); s != "" {
		if detail := checkSchedule(s); detail != "" {
			r.fail("schedule", detail)
		} else {
			// The parser splits on any white space; one space apiece keeps the file and
			// the commit message tidy.
			cj.schedule = strings.Join(strings.Fields(s), " ")
		}
	}
	return cj
}

func (cj *cronJob) file() string { return "cronjob-" + cj.name + ".yaml" }

func (cj *cronJob) Kind() Kind { return KindCronJob }

func (cj *cronJob) Owns(file string) bool { return file == cj.file() }

func (cj *cronJob) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cronjob %s: image %s, schedule %q", cj.name, cj.c.image, cj.schedule)
	if cj.timeZone != nil {
		fmt.Fprintf(&b, " %s", *cj.timeZone)
	}
	if cj.suspend {
		b.WriteString(", suspended")
	}
	return b.String()
}

func (cj *cronJob) Files() (map[string][]byte, error) {
	t := cj.target
	obj := &batchv1.CronJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"},
		ObjectMeta: metav1.ObjectMeta{Name: cj.name, Namespace: t.Namespace, Labels: t.labels()},
		Spec: batchv1.CronJobSpec{
			Schedule:          cj.schedule,
			TimeZone:          cj.timeZone,
			Suspend:           &cj.suspend,
			ConcurrencyPolicy: cj.concurrencyPolicy,
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: t.labels()},
				Spec:       batchv1.JobSpec{Template: cj.c.podTemplate(t)},
			},
		},
	}
	b, err := encode(obj)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{cj.file(): b}, nil
}
