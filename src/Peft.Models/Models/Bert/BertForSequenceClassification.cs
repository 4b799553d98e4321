using Peft.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Bert;

/// <summary>
/// A BERT encoder with a sequence-classification head whose state-dict names are transformers'
/// <c>BertForSequenceClassification</c> keys (<c>bert.embeddings.word_embeddings.weight</c>,
/// <c>bert.encoder.layer.0.attention.self.query.weight</c>, …, <c>bert.pooler.dense.weight</c>,
/// <c>classifier.weight</c>), so <see cref="HfCheckpoint"/> loads Hugging Face checkpoints strictly and adapter keys
/// read as PEFT's. Logits are <c>classifier(dropout(pooler))</c>. The <c>classifier</c> is <c>[Trainable]</c>, PEFT's
/// <c>modules_to_save</c> for <c>SEQ_CLS</c>: once adapters are added it is the only base module that trains.
/// </summary>
/// <remarks>The model declares no adapter: choose layers by configuration, PEFT's default for BERT being one line,
/// <c>model.ApplyTargets(new PeftTargets(BertTargets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)))</c>
/// (<see cref="BertTargets"/>; docs/bert.md).</remarks>
public sealed partial class BertForSequenceClassification : Module<Tensor, Tensor>
{
    private BertModel bert;
    private Module<Tensor, Tensor> dropout;
    [Trainable]
    private Module<Tensor, Tensor> classifier;

    /// <summary>Creates a randomly initialised model.</summary>
    /// <param name="config">Model sizes and label count.</param>
    public BertForSequenceClassification(BertConfig config) : base(nameof(BertForSequenceClassification))
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        bert = new BertModel(config);
        dropout = Dropout(config.ClassifierDropoutProb);
        classifier = Linear(config.HiddenSize, config.NumLabels);
        InitializePeft();
    }

    /// <summary>The sizes this model was built with.</summary>
    public BertConfig Config { get; }

    /// <summary>The encoder without the head.</summary>
    public BertModel Bert => bert;

    /// <summary>The classification head (<c>classifier</c>, [hidden → labels]); <c>[Trainable]</c>, so
    /// <see cref="Peft.Serialization.AdapterFiles.Save"/> writes it into the adapter file as PEFT's <c>modules_to_save</c>.</summary>
    public Module<Tensor, Tensor> Classifier => classifier;

    /// <summary>
    /// Builds a model from a Hugging Face directory (config.json + safetensors), strictly. The sizes in config.json are
    /// checked against the tensors in the weight files before the model is allocated.
    /// </summary>
    /// <param name="directory">The checkpoint directory.</param>
    /// <param name="options">Load options (default: strict).</param>
    /// <exception cref="CheckpointFormatException">The directory is malformed, config.json is not a supported BERT
    /// configuration, or a weight is NaN or infinite (the message names the file and the field or tensor).</exception>
    /// <exception cref="CheckpointMismatchException">The tensors do not fit the model config.json describes (each problem named).</exception>
    public static BertForSequenceClassification FromPretrained(string directory, CheckpointLoadOptions? options = null)
    {
        using var checkpoint = HfCheckpoint.Open(directory);
        var config = BertConfig.FromHf(checkpoint.Config);
        checkpoint.EnsureFits(config.ExpectedTensors(), options);
        var result = new BertForSequenceClassification(config);
        try
        {
            checkpoint.LoadInto(result, options);
        }
        catch
        {
            result.Dispose();
            throw;
        }

        result.eval();
        return result;
    }

    /// <summary>Logits [batch, labels] for unpadded token ids [batch, time].</summary>
    /// <param name="ids">Token ids (int64).</param>
    public override Tensor forward(Tensor ids) => Forward(ids, null, null);

    /// <summary>Logits [batch, labels] for token ids [batch, time] with padding.</summary>
    /// <param name="ids">Token ids (int64), padded on the right.</param>
    /// <param name="attentionMask">[batch, time], nonzero for real tokens and zero for padding; null when unpadded.</param>
    /// <param name="tokenTypeIds">Segment ids [batch, time], or null for all zeros.</param>
    public Tensor Forward(Tensor ids, Tensor? attentionMask, Tensor? tokenTypeIds = null)
    {
        using var scope = NewDisposeScope();
        var (_, pooled) = bert.Forward(ids, attentionMask, tokenTypeIds);
        return classifier.call(dropout.call(pooled)).MoveToOuterDisposeScope();
    }
}
