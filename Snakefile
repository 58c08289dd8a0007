# kinject: fine-tuning vs retrieval for knowledge injection (Ovadia et al., 2023).
#   snakemake --profile slurm all                          the paper's study (config.yaml) on SLURM
#   snakemake --cores 2 --configfile config/demo.yaml all  the embedded offline demo
from snakemake.utils import min_version

from kinject.settings import validate_config

min_version("9.0")


# config.yaml is the paper's study; a --configfile on the command line (the demo's) replaces it whole.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"



report: "report/workflow.rst"


# validated against config/schema.yaml with snakemake.utils.validate; a bad key or grid is one clear line
validate_config(config, " ".join(map(str, workflow.overwrite_configfiles)) or "config.yaml")


include: "rules/common.smk"
include: "rules/hub.smk"
include: "rules/data.smk"
include: "rules/questions.smk"
include: "rules/models.smk"
include: "rules/paraphrases.smk"
include: "rules/synthetic.smk"
include: "rules/finetune.smk"
include: "rules/retrieval.smk"
include: "rules/evaluate.smk"
include: "rules/controls.smk"
include: "rules/report.smk"
include: "rules/manifest.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
