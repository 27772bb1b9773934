"""The aws target: SageMaker (HyperPod, models, endpoints), EFS / FSx for Lustre, ECR and S3, through boto3."""
