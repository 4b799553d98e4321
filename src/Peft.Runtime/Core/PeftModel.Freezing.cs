using static TorchSharp.torch;

namespace Peft;

public static partial class PeftModel
{
    /// <summary>
    /// Freezes <paramref name="module"/> at run time as <see cref="FreezeAttribute"/> freezes a member: its whole subtree,
    /// adapters included, gets <c>requires_grad = false</c> now and from every later <see cref="ApplyTrainability"/> (which
    /// <see cref="TrainableParameters"/> and the trainer call), even inside a <see cref="TrainableAttribute"/> subtree. For
    /// configurations that choose what to freeze after the model is built (<see cref="LayerFreezing"/>).
    /// </summary>
    /// <param name="module">A registered module of a model (or a whole model).</param>
    public static void Freeze(this nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        ModuleTree.SetFrozenMark(module, true);
        foreach (var p in module.parameters())
        {
            if (p.requires_grad) p.requires_grad = false;
        }
    }

    /// <summary>
    /// Takes back <see cref="Freeze"/>: the module's parameters train again (<c>requires_grad = true</c>) unless an attribute
    /// freezes them or the model holds adapters (then <see cref="ApplyTrainability"/> decides, as for any base parameter).
    /// </summary>
    /// <param name="module">A module frozen with <see cref="Freeze"/>.</param>
    /// <param name="root">The model it belongs to, whose trainability rule is applied afterwards.</param>
    public static void Unfreeze(this nn.Module module, nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(root);
        ModuleTree.SetFrozenMark(module, false);
        foreach (var p in module.parameters())
        {
            p.requires_grad = true;
        }

        root.ApplyTrainability();
    }

    /// <summary>Whether <paramref name="module"/> itself was frozen with <see cref="Freeze"/>.</summary>
    /// <param name="module">A module.</param>
    /// <returns>True when marked.</returns>
    public static bool IsFrozenAtRunTime(this nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        return ModuleTree.IsMarkedFrozen(module);
    }
}
