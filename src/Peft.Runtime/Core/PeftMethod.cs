using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// What the runtime knows about one PEFT method: its name (the attribute's, also the generator catalogue's id), the layer
/// kinds it adapts, its options and attribute types, and its Hugging Face PEFT file format (peft_type, config fields,
/// tensor names). One subclass per method lives in the method's folder (<c>Methods/&lt;Name&gt;/</c>) and is registered by
/// one line in <see cref="PeftMethods"/>; nothing else in the runtime names a method (docs/ARCHITECTURE.md, "Adding a method").
/// </summary>
public abstract class PeftMethod
{
    /// <summary>The method's name: the attribute's name without "Attribute" (<c>LoRA</c> for <c>[LoRA]</c>); the generator's
    /// catalogue uses the same id, and generated descriptors record it.</summary>
    public abstract string Name { get; }

    /// <summary>Hugging Face PEFT's <c>peft_type</c> ("LORA", "IA3", ...). Several methods may share one (DoRA is LoRA with
    /// <c>use_dora</c>): <see cref="Reads"/> tells them apart.</summary>
    public abstract string PeftType { get; }

    /// <summary>The layer kinds the method adapts.</summary>
    public abstract PeftLayerKind LayerKinds { get; }

    /// <summary>The attribute that declares it (<c>[LoRA]</c>).</summary>
    public abstract Type AttributeType { get; }

    /// <summary>The options record (<see cref="LoRAOptions"/>).</summary>
    public abstract Type OptionsType { get; }

    /// <summary>The method this one is a variant of in PEFT's format (DoRA: LoRA), or null. When several registered
    /// methods read a config, a variant wins over its base.</summary>
    public virtual PeftMethod? VariantOf => null;

    /// <summary>True for PEFT's prompt-learning format: one tensor <c>prompt_embeddings</c> without a module path, and
    /// <c>modules_to_save</c> keys under <c>base_model.</c> instead of <c>base_model.model.</c>.</summary>
    public virtual bool IsPromptLearning => false;

    /// <summary>Whether PEFT's config class has an <c>exclude_modules</c> field, written as null (those with target modules
    /// mostly do; VeraConfig does not).</summary>
    public virtual bool HasExcludeModules => !IsPromptLearning;

    /// <summary>The names (relative to the adapted module, as in the file) of every tensor this method may save, e.g.
    /// <c>lora_A.weight</c>: the file-level tools use them to find the module path of a key.</summary>
    public abstract IReadOnlyList<string> TensorNames { get; }

    /// <summary>Whether an <c>adapter_config.json</c> describes this method (by default: its <c>peft_type</c> is <see cref="PeftType"/>).</summary>
    /// <param name="config">The config.</param>
    /// <returns>True when the method reads it.</returns>
    public virtual bool Reads(AdapterConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config.PeftType == PeftType;
    }

    /// <summary>
    /// The options the config gives the module at <paramref name="modulePath"/> (per-module patterns applied), or the
    /// adapter-wide options when it is null. Settings this library does not support are refused here, naming the file and
    /// the field.
    /// </summary>
    /// <param name="config">The config.</param>
    /// <param name="modulePath">A module path, or null.</param>
    /// <returns>The options.</returns>
    /// <exception cref="AdapterFormatException">A field is malformed or unsupported.</exception>
    public abstract PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath);

    /// <summary>Writes the method's own config fields (everything but the common ones <see cref="AdapterFiles"/> writes).</summary>
    /// <param name="writer">The adapter being saved, and the fields so far.</param>
    /// <exception cref="PeftConfigurationException">The adapter cannot be written in PEFT's format (e.g. per-layer settings PEFT
    /// stores once per adapter differ).</exception>
    public abstract void WriteConfig(AdapterConfigWriter writer);

    /// <summary>
    /// Settings of the model's adapter that differ from the config's and change what the same tensors compute (rank and
    /// alpha enter LoRA's scaling): loading such a file would silently compute something else. By default every option
    /// difference counts.
    /// </summary>
    /// <param name="path">The module path, for messages.</param>
    /// <param name="fromFile">The options the config gives that module.</param>
    /// <param name="inModel">The model's adapter options.</param>
    /// <returns>One line per difference.</returns>
    public virtual IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
    {
        ArgumentNullException.ThrowIfNull(fromFile);
        ArgumentNullException.ThrowIfNull(inModel);
        if (!fromFile.SameUpdate(inModel))
        {
            yield return $"{path}: the config gives {fromFile}, the model has {inModel}";
        }
    }

    /// <summary>
    /// Creates adapter <paramref name="adapterName"/> from a config on a model that does not have it yet (PEFT's
    /// <c>load_adapter</c> with a new name). By default on the layers the config's <c>target_modules</c> select, through
    /// configuration targeting; nothing changes on error.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="adapterName">The adapter to create.</param>
    /// <param name="config">The config.</param>
    /// <param name="fileShapes">The shapes of the tensors in the adapter's weights file, by key: a method whose adapter size
    /// comes from the config checks it against them before allocating anything.</param>
    /// <exception cref="AdapterFormatException">The config's targets do not fit the model.</exception>
    public virtual void CreateFromConfig(nn.Module model, string adapterName, AdapterConfig config, IReadOnlyDictionary<string, long[]> fileShapes)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        try
        {
            model.ApplyTargets(PeftTargets.ForLoading(config, adapterName));
        }
        catch (PeftConfigurationException ex)
        {
            throw new AdapterFormatException($"{config.Source}: creating adapter '{adapterName}' from its target_modules failed: {ex.Message}", ex);
        }
    }

    /// <summary>PEFT's names of the method's model-level tensors (<see cref="SharedAdapterTensors"/>, e.g. VeRA's
    /// <c>vera_A</c>, <c>vera_B</c>), stored in files as <c>base_model.{name}</c>; empty for methods whose tensors all
    /// belong to one layer.</summary>
    public virtual IReadOnlyList<string> SharedTensorNames => Array.Empty<string>();

    /// <summary>The names among <see cref="SharedTensorNames"/> that train (VB-LoRA's <c>vblora_vector_bank</c>: one
    /// parameter per adapter shared by all its layers, <see cref="SharedAdapterTensors.Parameters"/>); the others are frozen.
    /// Empty by default.</summary>
    public virtual IReadOnlyList<string> TrainableSharedTensorNames => Array.Empty<string>();

    /// <summary>
    /// Creates the shared tensors of adapter <paramref name="adapterName"/> from all the layers that carry it (sized by them
    /// as PEFT sizes them, generated as PEFT generates them), on the first layer's device and dtype. Only methods with
    /// <see cref="SharedTensorNames"/> implement it.
    /// </summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="layers">Each layer's options and description.</param>
    /// <returns>The set.</returns>
    /// <exception cref="PeftConfigurationException">The layers' options disagree on how to create them.</exception>
    /// <exception cref="NotSupportedException">The method has no shared tensors.</exception>
    public virtual SharedAdapterTensors CreateSharedTensors(string adapterName, IReadOnlyList<(PeftAdapterOptions Options, PeftLayerInfo Layer)> layers)
        => throw new NotSupportedException($"{Name} adapters have no shared tensors.");

    /// <inheritdoc />
    public override string ToString() => Name;
}

/// <summary>
/// Base of every method's options (<see cref="LoRAOptions"/>, ...): what the attribute's arguments or a configuration give
/// one adapter. Options validate themselves against a layer and create the adapter, so wrappers, targeting and files need
/// no per-method code.
/// </summary>
public abstract record PeftAdapterOptions
{
    /// <summary>The method these options configure.</summary>
    public abstract PeftMethod Method { get; }

    /// <summary>Checks the options for a layer.</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="layer">The layer.</param>
    /// <exception cref="PeftConfigurationException">An option is out of range for the layer; the message names the member
    /// and the fix.</exception>
    public abstract void Validate(string adapterName, PeftLayerInfo layer);

    /// <summary>Creates the adapter for a layer (after <see cref="Validate"/>), initialised as the method's paper and PEFT do.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <returns>The adapter; the caller adds it to the layer.</returns>
    public abstract PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer);

    /// <summary>
    /// The options for one module of a configuration-targeted model (PEFT applies <c>rank_pattern</c>/<c>alpha_pattern</c>,
    /// IA3 its <c>feedforward_modules</c>). By default the options themselves.
    /// </summary>
    /// <param name="fullName">The module's full dotted name.</param>
    /// <param name="targets">The configuration.</param>
    /// <returns>The options for that module.</returns>
    public virtual PeftAdapterOptions ForModule(string fullName, PeftTargets targets) => this;

    /// <summary>Whether an adapter created with these options rewrites its layer's base weight when added
    /// (<see cref="IBaseRewritingAdapter"/>: PiSSA, OLoRA); a load that creates such adapters restores the base weights if it fails.</summary>
    public virtual bool RewritesBase => false;

    /// <summary>Whether an adapter created with these options rewrites the base from calibration data rather than from the weight
    /// alone (CorDA): it is created waiting (<see cref="IBaseRewritingAdapter.RewritesBase"/> false, refusing to run) and a
    /// calibration step initialises it later through <see cref="AdaptedLayer.InitializeAdapterFromBase"/>. A load cannot derive
    /// such a residual from the weight, so it loads into calibrated adapters only, and <c>peft merge</c> takes the residual base.</summary>
    public virtual bool NeedsCalibration => false;

    /// <summary>Whether two options make an adapter compute the same update from the same tensors (ignoring, e.g., dropout
    /// and initialisation). By default: equal.</summary>
    /// <param name="other">The other options.</param>
    /// <returns>True when they do.</returns>
    public virtual bool SameUpdate(PeftAdapterOptions other) => Equals(other);

    /// <summary>The settings a report shows for an adapter (<c>peft inspect</c>): name and value pairs, e.g. r, alpha and
    /// the scaling.</summary>
    /// <returns>The pairs.</returns>
    public virtual IEnumerable<(string Name, object? Value)> Describe() => Array.Empty<(string, object?)>();
}
