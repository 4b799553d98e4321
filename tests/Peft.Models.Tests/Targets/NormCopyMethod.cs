using Peft.Serialization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Targets;

/// <summary>
/// A stand-in for LayerNorm tuning (being added to the runtime separately): an adapter on a norm that holds a trainable
/// copy of the norm's weight and bias and replaces them in the forward (<see cref="IParameterOverrideAdapter"/>). It lets
/// these tests check that every family's norms are reachable by configuration and compute as before when wrapped; it is
/// not registered in <see cref="PeftMethods"/> and has no file format.
/// </summary>
internal sealed class NormCopyMethod : PeftMethod
{
    public static NormCopyMethod Instance { get; } = new();

    public override string Name => "NormCopy";

    public override string PeftType => "TEST_NORM_COPY";

    public override PeftLayerKind LayerKinds => PeftLayerKind.Norm;

    public override Type AttributeType => typeof(object);

    public override Type OptionsType => typeof(NormCopyOptions);

    public override IReadOnlyList<string> TensorNames { get; } = ["copy.weight", "copy.bias"];

    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath) => throw new NotSupportedException();

    public override void WriteConfig(AdapterConfigWriter writer) => throw new NotSupportedException();
}

/// <summary>Options of <see cref="NormCopyMethod"/> (none).</summary>
internal sealed record NormCopyOptions : PeftAdapterOptions
{
    public override PeftMethod Method => NormCopyMethod.Instance;

    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        if (layer.Kind != PeftLayerKind.Norm) throw new PeftConfigurationException($"'{layer.MemberName}' is not a norm.", layer.MemberName, adapterName);
    }

    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new NormCopyAdapter(adapterName, layer, this);
}

/// <summary>The adapter: weight (and bias) starting as the base norm's, used instead of them.</summary>
internal sealed class NormCopyAdapter : PeftAdapter, IParameterOverrideAdapter
{
    private readonly NormCopyOptions _options;
    private readonly Parameter _weight;
    private readonly Parameter? _bias;

    public NormCopyAdapter(string adapterName, PeftLayerInfo layer, NormCopyOptions options)
        : base(adapterName, layer)
    {
        _options = options;
        _weight = CreateParameter("weight", layer.OutFeatures);
        _bias = layer.HasBias ? CreateParameter("bias", layer.OutFeatures) : null;
    }

    public override PeftAdapterOptions Config => _options;

    public Tensor Weight => _weight;

    public Tensor? Bias => _bias;

    /// <summary>Copies the base norm's parameters (the adapter starts as the identity change).</summary>
    public void CopyFrom(AdaptedLayer layer)
    {
        using var _ = no_grad();
        _weight.copy_(layer.Weight);
        if (_bias is not null) _bias.copy_(layer.Bias!);
    }

    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return ("copy.weight", _weight);
        if (_bias is not null) yield return ("copy.bias", _bias);
    }

    public void MergeInto(LayerParameters target) => throw new NotSupportedException();

    public void UnmergeFrom(LayerParameters target) => throw new NotSupportedException();
}
